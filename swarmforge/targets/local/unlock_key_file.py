"""The local target's unlock key store: one 0600 file in a 0700 dir of this user's, outside
the repository (the default state dir is inside it) and outside every dir the pipeline
writes logs, journals or reports to."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from swarmforge.private_files import PRIVATE_DIR, private_dirs, write_private
from swarmforge.settings import Settings
from swarmforge.unlock_keys import UnlockKeys


def secrets_root() -> Path:
    """This user's dir of unlock keys: $XDG_STATE_HOME/swarmforge/unlock-keys (by default
    ~/.local/state/...), where no checkout, state dir or CI artifact lives."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "swarmforge" / "unlock-keys"


class UnlockKeyFile:
    """A cluster's unlock keys as a file named by the cluster and its state dir: two state
    dirs may each hold a cluster of one name, and never share a key."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.root = root or secrets_root()
        state = os.path.abspath(settings.state_dir).encode()
        self.path = self.root / f"{settings.cluster}-{hashlib.sha256(state).hexdigest()[:8]}"

    @property
    def where(self) -> str:
        return f"the file {self.path} (0600)"

    def get(self) -> UnlockKeys | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        return UnlockKeys.from_text(text, self.where)

    def put(self, keys: UnlockKeys) -> None:
        private_dirs(self.root)
        os.chmod(self.root, PRIVATE_DIR)  # ours alone even if it was found open
        write_private(self.path, keys.to_text())

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
