"""Ansible vars plugins cratekeeper puts on ``ANSIBLE_VARS_PLUGINS`` for every run."""
