"""Block references and version ordering."""

from __future__ import annotations

import pytest

from controller.errors import CratekeeperError
from controller.refs import BlockRef, is_downgrade


def test_reference_parts_and_round_trip() -> None:
    ref = BlockRef.parse("registry.acme-corp.com:5000/acme/apps/app-deploy:1.2.0")
    assert ref.registry == "registry.acme-corp.com:5000"
    assert ref.repository == "acme/apps/app-deploy"
    assert ref.name == "registry.acme-corp.com:5000/acme/apps/app-deploy"
    assert ref.version == "1.2.0"
    assert str(ref) == "registry.acme-corp.com:5000/acme/apps/app-deploy:1.2.0"


def test_localhost_and_ip_registries_are_explicit_hosts() -> None:
    assert BlockRef.parse("localhost:5000/app:1.0.0").registry == "localhost:5000"
    assert BlockRef.parse("127.0.0.1:5000/app:1.0.0").registry == "127.0.0.1:5000"


def test_reference_errors_are_our_own_error_type() -> None:
    with pytest.raises(CratekeeperError) as caught:
        BlockRef.parse("registry.acme-corp.com/app:latest")
    assert caught.value.reason == "InvalidReference"


@pytest.mark.parametrize(
    ("old", "new", "down"),
    [
        ("1.2.0", "1.1.0", True),
        ("1.1.0", "1.2.0", False),
        ("v2.0.0", "v1.9.9", True),
        ("1.10.0", "1.9.0", True),
        ("1.0.0", "1.0.0-rc.1", True),
        ("2", "1", True),
        ("stable", "1.0.0", False),  # not semver: never called a rollback
    ],
)
def test_downgrades_follow_semver_ordering(old: str, new: str, down: bool) -> None:
    assert is_downgrade(old, new) is down
