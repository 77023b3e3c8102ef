"""Settings: every bad input is refused up front, one clear line each, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Config

from swarmforge.errors import ConfigError
from swarmforge.settings import Settings, config_defaults, load_settings
from swarmforge.targets import target_for
from tests.conftest import invoke


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"managers": 0}, "managers: 0 leaves the swarm without a manager"),
        ({"managers": 4}, "managers: 4 is even; 4 managers survive only 1 failure"),
        ({"managers": 9}, "managers: 9 is more than 7"),
        ({"workers": -1}, "workers: -1 is negative"),
        ({"ami_id": "ami-12345"}, "ami_id: 'ami-12345' is not an AMI id"),
        ({"ami_id": "AMI-0123456789abcdef0"}, "is not an AMI id"),
        ({"target": "gcp"}, "target: unknown target 'gcp'; choose one of: local, aws"),
        ({"cluster": "Bad_Name"}, "cluster: 'Bad_Name' must be 2-24 characters"),
        ({"managers": "three"}, "managers: 'three' is not a valid whole number"),
        ({"managers": 2.5}, "managers: 2.5 is not a valid whole number"),
        ({"allowed_ssh_cidrs": "0.0.0.0/0"}, "opens SSH to the whole internet"),
        ({"allowed_ssh_cidrs": "10.0.0.1/8"}, "is not a network"),
        ({"region": "mars"}, "region: 'mars' is not an AWS region name"),
        ({"parallelism": 0}, "parallelism: 0 must be from 1 to 100"),
        ({"colour": "blue"}, "unknown setting swarmforge.colour"),
    ],
)
def test_each_bad_input_gives_one_clear_line(flags: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, flags)
    assert len(caught.value.problems) == 1
    assert expected in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0]


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"managers": 0, "workers": -2, "target": "nope"})
    assert len(caught.value.problems) == 3


def test_even_managers_need_the_explicit_flag() -> None:
    assert load_settings({}, {"managers": 4, "allow_even_managers": True}).managers == 4


def test_flags_beat_config_beat_defaults() -> None:
    settings = load_settings({"managers": 5, "workers": 7}, {"workers": "3", "managers": None})
    assert (settings.managers, settings.workers, settings.cluster) == (5, 3, Settings().cluster)


def test_env_vars_reach_settings_through_invoke_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKE_SWARMFORGE_WORKERS", "4")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    assert load_settings(config["swarmforge"], {}).workers == 4


def test_list_settings_come_from_env_vars_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKE_SWARMFORGE_PRELOAD_IMAGES", "/a.tar,/b.tar")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    assert load_settings(config["swarmforge"], {}).preload_images == ("/a.tar", "/b.tar")


def test_the_cli_refuses_bad_input_before_creating_anything(tmp_path: Path) -> None:
    result = invoke("apply", "--target", "local", "--cluster", "refused", "--managers", "2",
                    state_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "swarmforge: managers: 2 is even; 2 managers survive only 0 failure(s), as 1 do: "
        "use 1 or 3, or pass --allow-even-managers"
    ]
    assert list(tmp_path.iterdir()) == []
    assert not Path("/run/swarmforge/refused").exists()


def test_the_local_target_refuses_more_workers_than_its_network_holds() -> None:


    with pytest.raises(ConfigError) as caught:
        target_for(load_settings({}, {"workers": 151}))
    assert str(caught.value) == "workers: the local sandbox holds at most 150 workers"
