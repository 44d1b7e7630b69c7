"""Tests against a real cluster with the chart installed (.github/workflows/e2e.yml: kind).

Every test here is marked ``e2e`` and skips, with the reason, only when ``KUBECONFIG`` names no
reachable cluster; ``CRATEKEEPER_E2E_REQUIRED=1`` (as the workflow sets) turns even that into a
failure. A missing kubectl is a failure (it comes with the dev extra). The release is found by
``CRATEKEEPER_E2E_NAMESPACE`` (``cratekeeper-system``) and ``CRATEKEEPER_E2E_RELEASE``
(``cratekeeper``).
"""
