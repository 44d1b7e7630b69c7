"""What a command that acts builds from the settings: the settings with the command's flags on
top, the registry client and the runner (``reconcile``, ``blocks push|pull``, ``plan
--preview``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import CratekeeperError
from controller.settings import Settings, load_settings

# The registry client and the runners are imported where they are used.
if TYPE_CHECKING:
    from controller.registry import RegistryClient
    from controller.runners.base import Runner


def settings_for(args: argparse.Namespace) -> Settings:
    """Environment settings with the command's flags mapped on top."""
    env = load_settings()
    update: dict[str, object] = {}
    if getattr(args, "insecure_registry", None):
        update["insecure_registries"] = [*env.insecure_registries, *args.insecure_registry]
    if getattr(args, "registry_mirror", None):
        flags = load_settings(registry_mirrors=",".join(args.registry_mirror))
        update["registry_mirrors"] = {**env.registry_mirrors, **flags.registry_mirrors}
    if getattr(args, "age_identity_file", None):
        update["age_identity_file"] = Path(args.age_identity_file)
    for flag, field in (
        ("runner", "runner"),
        ("image", "execution_image"),
        ("docker_network", "docker_network"),
    ):
        if getattr(args, flag, None):
            update[field] = getattr(args, flag)
    return env.model_copy(update=update)


def registry_for(args: argparse.Namespace, settings: Settings) -> RegistryClient:
    """The CLI's registry client: a ``--docker-config`` may name credential helpers (the
    operator never runs those)."""
    from controller.registry import DockerConfig, RegistryClient, RegistryOptions
    from controller.registry.helpers import run_helper

    config = None
    if getattr(args, "docker_config", None):
        config = DockerConfig.from_file(Path(args.docker_config), helpers=run_helper)
    return RegistryClient(RegistryOptions.from_settings(settings, docker_config=config))


def runner_for(settings: Settings) -> Runner:
    """The runner the settings ask for (the kubernetes runner belongs to the operator)."""
    if settings.runner == "docker":
        from controller.runners.docker import DockerRunner  # the docker SDK: only when asked

        return DockerRunner(settings.execution_image, network_mode=settings.docker_network)
    if settings.runner in (None, "local"):  # the CLI's default: ansible-playbook here
        from controller.runners.local import LocalRunner

        return LocalRunner()
    raise CratekeeperError(
        "the kubernetes runner runs inside the operator (cratekeeper run); "
        "use --runner local or --runner docker here"
    )
