"""Progress for long steps: one line per step on stderr, with its time.

Results (tables, JSON) go to stdout; progress goes to stderr so both can be piped apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from swarmforge.errors import interrupted
from swarmforge.redact import redact


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.say(f"==> {title}")
        started = time.monotonic()
        try:
            yield
        except KeyboardInterrupt as exc:  # Ctrl-C: the innermost step says where it stopped
            raise interrupted(exc, title) from None
        self.say(f"    ({time.monotonic() - started:.1f}s)")

    def detail(self, line: str) -> None:
        self.say(f"    {line}")

    def say(self, line: str) -> None:
        # Details quote errors and command output: no secret reaches a terminal or a CI log.
        print(redact(line), file=self.stream, flush=True)
