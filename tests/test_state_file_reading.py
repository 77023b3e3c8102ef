"""The local state read beside a running Terraform, which rewrites the file in place:
a half-written file is read again, never taken for the state nor for no state."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from swarmforge import state_file
from swarmforge.settings import Settings, load_settings
from swarmforge.state_file import LOCAL_STATE, StateBeingWritten, state_outputs

OUTPUTS = {"outputs": {"managers": {"value": [{"name": "m0"}]}}}


def settings_in(tmp_path: Path) -> Settings:
    return load_settings({"cluster": "reader", "state_dir": str(tmp_path / "state")}, {})


def test_a_state_half_written_is_read_again_until_it_is_whole(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    path = settings.cluster_dir / LOCAL_STATE
    path.parent.mkdir(parents=True)
    whole = json.dumps(OUTPUTS)
    path.write_text(whole[: len(whole) // 2])  # as Terraform leaves it mid-write

    def finish() -> None:
        time.sleep(0.3)
        path.write_text(whole)

    writer = threading.Thread(target=finish)
    writer.start()
    outputs = state_outputs(settings)
    writer.join()

    assert outputs == {"managers": [{"name": "m0"}]}


@pytest.mark.parametrize("text", ["", '{"outputs": {"managers": {"val'])
def test_a_state_never_whole_says_the_cluster_is_being_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(state_file, "READ_ATTEMPTS", 3)
    settings = settings_in(tmp_path)
    path = settings.cluster_dir / LOCAL_STATE
    path.parent.mkdir(parents=True)
    path.write_text(text)

    with pytest.raises(StateBeingWritten, match="'reader' is being changed") as caught:
        state_outputs(settings)

    assert caught.value.exit_code == 4


def test_no_state_file_is_no_state(tmp_path: Path) -> None:
    assert state_outputs(settings_in(tmp_path)) == {}
