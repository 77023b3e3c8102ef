"""Work run beside the main thread: one that only waits (for SSH, for Terraform), its
answer or its exception handed over to whoever takes the result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Beside(Generic[T]):
    """``fn()`` started at once in a thread of its own; ``result()`` waits for it and returns
    what it returned, or raises, in the waiting thread, what it raised. The thread is a
    daemon: a Ctrl-C in the main thread is not held up by it (whoever started one still
    waits for it before the work it overlaps is given up)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to result(), in the waiting thread
            self._error = exc

    def wait(self) -> None:
        """Wait for it to end, and leave what it raised untold."""
        self._thread.join()

    def result(self) -> T:
        self.wait()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)
