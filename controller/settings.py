"""The one settings object: ``CRATEKEEPER_*`` environment variables, CLI flags mapped onto it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "cratekeeper"


class Settings(BaseSettings):
    """Process-wide settings. Read once at start-up; passed down explicitly, never re-read."""

    model_config = SettingsConfigDict(env_prefix="CRATEKEEPER_", extra="ignore")

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where Git mirrors and pulled blocks (by digest) are cached.",
    )
    insecure_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host[:port] allowed over plain HTTP; all others use HTTPS.",
    )
    age_identity_file: Path | None = Field(
        default=None, description="File holding the age identity that decrypts *.age files."
    )
    age_identity: str | None = Field(
        default=None,
        description="The age identity itself (AGE-SECRET-KEY-1...), when no file is used.",
        repr=False,
    )
    max_block_size: int = Field(
        default=50 * 1024 * 1024,
        description="Largest unpacked block archive accepted from a registry, in bytes.",
    )

    @field_validator("insecure_registries", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
