"""Where a join token or an unlock key could leak: process argv while the pipeline runs, and
files on disk."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

TOKEN = re.compile(rb"SWMTKN-1-[0-9a-z]{30,}-[0-9a-z]{20,}")
# An autolocked swarm's unlock key (base64 of 32 bytes). files_holding looks for the key a
# test names (other tests' made-up keys sit in /tmp); argv holds no key of anyone's.
UNLOCK_KEY = re.compile(rb"SWMKEY-1-[A-Za-z0-9+/=]{20,}")


class Poller:
    """Calls ``poll()`` every ``interval`` seconds in a thread, inside a ``with`` block,
    until the block ends or ``poll()`` returns True (done)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self: P) -> P:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def poll(self) -> bool:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set() and not self.poll():
            self._stop.wait(self.interval)


P = TypeVar("P", bound=Poller)


class ArgvWatcher(Poller):
    """Samples every process's argv while running; keeps any that holds a token or a key."""

    def __init__(self, interval: float = 0.01, marker: bytes | None = None) -> None:
        super().__init__(interval)
        self.seen: list[str] = []
        self.samples = 0
        self.marker = marker  # something in the watched command's own argv
        self.marked = 0  # samples that caught it: proof the watch overlapped the command

    def poll(self) -> bool:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes()
            except OSError:
                continue
            if self.marker and self.marker in argv:
                self.marked += 1
            if ((b"SWMTKN-" in argv and TOKEN.search(argv))
                    or (b"SWMKEY-" in argv and UNLOCK_KEY.search(argv))):
                self.seen.append(argv.replace(b"\0", b" ").decode(errors="replace"))
        self.samples += 1
        return False


def files_holding(roots: Iterable[Path], needles: Iterable[str], *, newer_than: float = 0.0,
                  skip: Iterable[str] = ()) -> list[str]:
    """Files under ``roots`` (modified after ``newer_than``) that contain a needle or any token."""
    wanted = [n.encode() for n in needles]
    skipped = list(skip)
    found = []
    for root in roots:
        if not root.exists():
            continue
        for path in (_tree(root) if root.is_dir() else [root]):
            if any(part in skipped for part in path.parts) or not path.is_file():
                continue
            try:
                if path.stat().st_mtime < newer_than:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in wanted) or TOKEN.search(data):
                found.append(str(path))
    return found


def _tree(root: Path) -> Iterator[Path]:
    """Everything under ``root``, as rglob("*") lists it, but a dir that others remove while
    we walk (in /tmp, say: tests run side by side) is passed over, as a vanished file is."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(folder, name)
