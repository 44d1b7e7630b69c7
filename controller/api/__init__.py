"""The Workspace custom resource as code: spec and status models (DESIGN §3)."""
