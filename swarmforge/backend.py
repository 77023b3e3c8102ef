"""Terraform backend settings, rendered for the Terraform version at hand.

The S3 backend changed its spelling twice: Terraform 1.6 moved custom endpoints
into ``endpoints = {...}`` and renamed ``force_path_style`` to ``use_path_style``;
1.10 added lock files in the bucket itself (``use_lockfile``), so a DynamoDB lock
table is only needed before it. Older spellings still work for a while but warn,
and a newer spelling is an error on an older Terraform: render what it expects.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.version import Version

from swarmforge.errors import ConfigError

if TYPE_CHECKING:
    import jinja2

# Compared on the release part only, so that 1.10.0-rc1 counts as 1.10.
LOCKFILE_SINCE = (1, 10)
ENDPOINTS_SINCE = (1, 6)


@dataclass(frozen=True)
class S3Backend:
    """State in an S3 bucket; ``endpoint`` only for S3-compatible servers (tests)."""

    bucket: str
    key: str
    region: str
    endpoint: str | None = None
    dynamodb_table: str | None = None


def render_backend(backend: S3Backend, terraform_version: Version) -> str:
    """The whole ``backend.tf``: ``terraform { backend "<kind>" { ... } }``."""
    settings = render_backend_settings(backend, terraform_version)
    return _template("backend.tf.j2").render(
        kind="s3",
        settings=settings.rstrip("\n"),
        terraform_version=terraform_version,
    )


def render_backend_settings(backend: S3Backend, terraform_version: Version) -> str:
    """Only the settings: a ``-backend-config`` file for a partial ``backend "s3" {}`` block."""
    return _render_s3(backend, terraform_version)


def _render_s3(backend: S3Backend, terraform_version: Version) -> str:
    lockfile = terraform_version.release >= LOCKFILE_SINCE
    if not lockfile and not backend.dynamodb_table:
        raise ConfigError(
            [
                f"Terraform {terraform_version} cannot lock S3 state without a DynamoDB table: "
                f"set a lock table for bucket {backend.bucket!r}, or use Terraform >= 1.10."
            ]
        )
    return _template("backend-s3.j2").render(
        backend=backend,
        lockfile=lockfile,
        modern_spelling=terraform_version.release >= ENDPOINTS_SINCE,
    )


def hcl_string(value: str) -> str:
    """``value`` as a quoted HCL string literal that Terraform reads back unchanged."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        # HCL would read these as the start of an interpolation or a directive.
        .replace("${", "$${")
        .replace("%{", "%%{")
    )
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 else c for c in escaped)
    return f'"{escaped}"'


@functools.cache
def _environment() -> jinja2.Environment:
    # jinja2 is loaded only for a state bucket: every other command starts without it.
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("swarmforge", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # HCL, not HTML: values are quoted by hcl_string
    )
    environment.filters["hcl_string"] = hcl_string
    return environment


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)
