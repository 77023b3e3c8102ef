"""Beside: work run in a thread, its answer or its exception handed to the one who waits."""

from __future__ import annotations

import threading

import pytest

from swarmforge.beside import Beside
from swarmforge.errors import SwarmError


def test_the_result_is_what_the_work_returned_computed_in_another_thread() -> None:
    ran_in: list[threading.Thread] = []

    def work() -> int:
        ran_in.append(threading.current_thread())
        return 42

    assert Beside(work).result() == 42
    assert ran_in and ran_in[0] is not threading.current_thread()


def test_what_the_work_raised_is_raised_by_result_and_left_untold_by_wait() -> None:
    def work() -> None:
        raise SwarmError("no manager answered")

    beside = Beside(work)
    beside.wait()  # a caller that gives the work up only waits for it
    with pytest.raises(SwarmError, match="no manager answered"):
        beside.result()


def test_the_caller_goes_on_while_the_work_waits() -> None:
    release = threading.Event()
    beside = Beside(lambda: release.wait(10))
    release.set()  # reached although the work has not ended: it runs beside
    assert beside.result() is True
