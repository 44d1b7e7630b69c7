"""Fixtures that start real servers, shared by the whole suite (see tests/support/)."""

pytest_plugins = [
    "tests.support.git_servers",
    "tests.support.oci_registry",
    "tests.support.kube_emulator",
    "tests.support.docker_engine",
]
