"""Ansible callback plugins shipped with cratekeeper (loaded by ansible-playbook, not imported)."""
