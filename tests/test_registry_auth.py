"""Registry authentication and transport: basic and bearer auth, TLS, docker configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.errors import (
    RegistryAuthError,
    RegistryUnreachableError,
)
from controller.registry import (
    DockerConfig,
    RegistryOptions,
    pull_block,
    push_block,
)
from controller.registry.auth import parse_challenge
from controller.settings import Settings
from tests.support.oci_registry import (
    PASSWORD,
    USER,
    Registry,
    RegistryProxy,
    free_port,
)
from tests.support.registry_blocks import (
    client_for,
    make_block,
    new_ref,
)

# --- authentication and transport ----------------------------------------------------------


@pytest.mark.parametrize("form", ["auth", "username/password"])
def test_basic_auth_registry_accepts_docker_config_credentials(
    oci_registry_basic_auth: Registry, tmp_path: Path, form: str
) -> None:
    host = oci_registry_basic_auth.host
    config = (
        oci_registry_basic_auth.docker_config()
        if form == "auth"
        else json.dumps({"auths": {f"http://{host}/v1/": {"username": USER, "password": PASSWORD}}})
    )
    ref = new_ref(host)
    client = client_for(host, tmp_path, docker_config=config)
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)
    assert pull_block(ref, tmp_path / "ws", client=client).digest == digest


def test_wrong_credentials_are_an_auth_error_that_never_shows_the_password(
    oci_registry_basic_auth: Registry, tmp_path: Path
) -> None:
    host = oci_registry_basic_auth.host
    wrong = "wrong-Pa55word-xyz"
    client = client_for(
        host, tmp_path, docker_config=oci_registry_basic_auth.docker_config(USER, wrong)
    )
    with pytest.raises(RegistryAuthError, match="rejected the credentials") as caught:
        pull_block(new_ref(host), tmp_path / "ws", client=client)
    assert wrong not in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_anonymous_pull_from_a_protected_registry_says_which_credentials_are_missing(
    oci_registry_basic_auth: Registry, tmp_path: Path
) -> None:
    host = oci_registry_basic_auth.host
    with pytest.raises(RegistryAuthError, match=f"'auths' entry for {host}"):
        pull_block(new_ref(host), tmp_path / "ws", client=client_for(host, tmp_path))


def test_bearer_token_registry_round_trip(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy(bearer=(USER, PASSWORD))
    ref = new_ref(proxy.host)
    client = client_for(proxy.host, tmp_path, docker_config=proxy.docker_config(USER, PASSWORD))
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)
    assert pull_block(ref, tmp_path / "ws", client=client).digest == digest
    assert 0 < proxy.token_requests <= 4  # tokens are reused, not fetched per request


def test_bearer_token_registry_with_wrong_password_is_an_auth_error(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy(bearer=(USER, PASSWORD))
    client = client_for(proxy.host, tmp_path, docker_config=proxy.docker_config(USER, "nope-x1"))
    with pytest.raises(RegistryAuthError, match="token service") as caught:
        pull_block(new_ref(proxy.host), tmp_path / "ws", client=client)
    assert "nope-x1" not in str(caught.value)


def test_closed_port_is_registry_unreachable(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnreachableError, match="connection refused"):
        pull_block(new_ref(host), tmp_path / "ws", client=client_for(host, tmp_path))


def test_registry_not_listed_as_insecure_is_spoken_to_over_https(
    oci_registry: Registry, tmp_path: Path
) -> None:
    client = client_for(oci_registry.host, tmp_path, insecure_registries=())
    with pytest.raises(RegistryUnreachableError, match="CRATEKEEPER_INSECURE_REGISTRIES"):
        pull_block(new_ref(oci_registry.host), tmp_path / "ws", client=client)


def test_options_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        insecure_registries=["127.0.0.1:5000", "registry.local"],
        cache_dir=tmp_path,
        max_block_size=1234,
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"registry.local": {"auth": "dTpw"}}}))
    options = RegistryOptions.from_settings(settings, docker_config=config)
    assert options.is_insecure("127.0.0.1:5000")
    assert options.is_insecure("registry.local:8443")  # a bare host covers every port
    assert not options.is_insecure("127.0.0.1:5001")
    assert (options.cache_dir, options.max_block_size) == (tmp_path, 1234)
    credentials = options.credentials("registry.local:8443")
    assert credentials is not None
    assert (credentials.username, credentials.password) == ("u", "p")
    assert "p'" not in repr(options)


# --- docker config and challenges (no registry) --------------------------------------------


def test_docker_config_reads_auth_and_username_password_forms() -> None:
    config = DockerConfig.from_json(
        json.dumps(
            {
                "auths": {
                    "https://registry.acme-corp.com/v1/": {"auth": "YWxpY2U6cDpzcw=="},
                    "ghcr.io": {"username": "bob", "password": "pw"},
                    "token.example.com": {"identitytoken": "refresh"},
                }
            }
        )
    )
    alice = config.for_registry("registry.acme-corp.com")
    assert alice is not None
    assert (alice.username, alice.password) == ("alice", "p:ss")
    bob = config.for_registry("ghcr.io")
    assert bob is not None
    assert (bob.username, bob.password) == ("bob", "pw")
    assert config.for_registry("unknown.example.com") is None
    assert "p:ss" not in repr(config)


@pytest.mark.parametrize(
    "text", ["{not json", '{"auths": []}', '{"auths": {"h": {"auth": "!!notbase64"}}}']
)
def test_broken_docker_config_is_an_auth_error_that_quotes_no_content(text: str) -> None:
    with pytest.raises(RegistryAuthError) as caught:
        DockerConfig.from_json(text)
    assert "notbase64" not in str(caught.value)


def test_bearer_challenge_is_parsed() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:acme/app:pull,push"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:acme/app:pull,push",
    }
