"""Progress for long steps: one line per step on stderr, with its time.

Results (tables, JSON) go to stdout; progress goes to stderr so both can be piped apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.say(f"==> {title}")
        started = time.monotonic()
        yield
        self.say(f"    ({time.monotonic() - started:.1f}s)")

    def detail(self, line: str) -> None:
        self.say(f"    {line}")

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
