"""cratekeeper: GitOps reconciliation of Polycrate workspaces, one Git repo per cluster."""

__version__ = "0.1.0"
