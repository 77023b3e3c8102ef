"""What the state dir holds: one dir per cluster, beside the shared ones (``_build``, ...).

Only ``apply`` makes a cluster. Every other command on a cluster that does not
exist stops with one line naming the clusters that do, so that a typo in
``--cluster`` makes nothing (no dir, no keys, no lock, no ``terraform init``).
"""

from __future__ import annotations

from pathlib import Path

from swarmforge.errors import ConfigError
from swarmforge.settings import CLUSTER_NAME, Settings


def clusters_in(state_dir: Path) -> list[str]:
    """The clusters whose dirs the state dir holds, by name. The shared dirs start with
    "_", which no cluster name can; an empty dir holds no cluster."""
    if not state_dir.is_dir():
        return []
    return sorted(p.name for p in state_dir.iterdir()
                  if p.is_dir() and CLUSTER_NAME.fullmatch(p.name) and any(p.iterdir()))


def no_such_cluster(settings: Settings) -> ConfigError:
    """The one line for a command on a cluster that does not exist (a typo, most likely)."""
    state_dir = Path(settings.state_dir)
    where = str(state_dir) + (f" or s3://{settings.state_bucket}/swarmforge/"
                              if settings.state_bucket else "")
    here = ", ".join(clusters_in(state_dir)) or "none"
    return ConfigError([f"no cluster {settings.cluster!r} in {where}; clusters here: {here} "
                        "(only `invoke apply` makes one)"])
