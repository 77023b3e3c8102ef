"""A cluster's Terraform working directory.

Several clusters use one config in the repo, so each gets its own copy of it
(with the node scripts beside it) and its own ``.terraform`` and state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from swarmforge.settings import SCRIPTS_DIR


def render_workspace(config_dir: Path, dest: Path, backend_tf: str | None = None) -> Path:
    """Copy ``config_dir``'s .tf files and ``scripts/`` into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob("*.tf"):
        stale.unlink()
    for source in [*config_dir.glob("*.tf"), *config_dir.glob(".terraform.lock.hcl")]:
        shutil.copy2(source, dest / source.name)
    shutil.rmtree(dest / "scripts", ignore_errors=True)
    shutil.copytree(SCRIPTS_DIR, dest / "scripts")
    if backend_tf:
        (dest / "backend.tf").write_text(backend_tf)
    return dest
