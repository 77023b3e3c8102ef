"""A Terraform configuration read as python-hcl2 gives it, for the static tests.

Every ``.tf`` file of a folder is parsed once and its top-level blocks merged;
python-hcl2's bookkeeping keys (``__start_line__``, ...) are left out, and block
labels lose the quotes python-hcl2 keeps.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM = Path(__file__).resolve().parent.parent / "terraform"


@cache
def blocks(folder: Path) -> dict[str, list[Any]]:
    """All top-level blocks of the ``.tf`` files in ``folder``, by kind (resource, locals, ...)."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            for kind, entries in hcl2.load(handle).items():
                if not kind.startswith("__"):
                    merged.setdefault(kind, []).extend(entries)
    return merged


def labelled(folder: Path, kind: str) -> dict[str, dict[str, Any]]:
    """``{"type.name": body}`` of the blocks of ``kind`` with two labels (resource, data)."""
    return {f"{unquote(label)}.{unquote(name)}": body
            for block in blocks(folder).get(kind, [])
            for label, named in block.items() if not label.startswith("__")
            for name, body in named.items() if not name.startswith("__")}


def locals_of(folder: Path) -> dict[str, Any]:
    """Every local value of the configuration, merged over its ``locals`` blocks."""
    merged: dict[str, Any] = {}
    for block in blocks(folder).get("locals", []):
        merged.update({k: v for k, v in block.items() if not k.startswith("__")})
    return merged


def unquote(label: str) -> str:
    return label.strip('"')
