"""The unlock key stores (issue 19.3): the local 0600 file outside the repository, and the
aws SSM SecureString on moto's server; the key as a value that never shows itself.

The whole path on a real swarm (autolock on, a manager restarted locked and unlocked, a
rotation, the key found nowhere else) is tests/test_autolock.py.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from swarmforge.aws_api import client
from swarmforge.errors import SwarmError
from swarmforge.settings import REPO_ROOT, Settings, load_settings
from swarmforge.targets import target_for
from swarmforge.targets.aws.unlock_key_parameter import UnlockKeyParameter, parameter_name
from swarmforge.targets.local.unlock_key_file import UnlockKeyFile, secrets_root
from swarmforge.unlock_keys import UnlockKey, UnlockKeys

REGION = "eu-west-1"


def made_up_key(seed: int) -> UnlockKey:
    return UnlockKey("SWMKEY-1-" + base64.b64encode(bytes([seed]) * 32).decode().rstrip("="))


CURRENT, PREVIOUS = made_up_key(1), made_up_key(2)


def test_a_key_never_shows_itself() -> None:
    keys = UnlockKeys(CURRENT, PREVIOUS, 1.0)
    for shown in (repr(CURRENT), str(CURRENT), repr(keys), f"{keys}"):
        assert "SWMKEY" not in shown, shown
    assert UnlockKeys.from_text(keys.to_text(), "here") == keys
    assert keys.candidates() == [CURRENT, PREVIOUS]


@pytest.mark.parametrize("text", ["SWMTKN-1-abc", "", "SWMKEY-1-", "SWMKEY-1-ab cd"])
def test_what_is_not_a_key_is_refused_without_being_named(text: str) -> None:
    with pytest.raises(SwarmError) as refused:
        UnlockKey(text)
    assert "SWMKEY" not in str(refused.value) and "SWMTKN" not in str(refused.value)


def test_a_store_that_holds_garbage_says_where_not_what() -> None:
    with pytest.raises(SwarmError, match="the file x does not hold unlock keys") as refused:
        UnlockKeys.from_text('{"current": "SWMKEY-1-not base64!"}', "the file x")
    assert "base64!" not in str(refused.value)


# -- local -----------------------------------------------------------------------------------


def local_settings(state: Path, cluster: str = "al-store") -> Settings:
    return Settings(cluster=cluster, state_dir=str(state))


def test_the_local_store_is_a_private_file_outside_the_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    os.umask(0o000)  # whatever the umask: ours alone
    try:
        store = UnlockKeyFile(local_settings(tmp_path / "state"))
        assert store.get() is None
        store.put(UnlockKeys(CURRENT))
    finally:
        os.umask(0o022)
    assert store.path.parent == secrets_root() == tmp_path / "xdg" / "swarmforge" / "unlock-keys"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert REPO_ROOT not in store.path.parents
    assert "SWMKEY" not in store.where and str(store.path) in store.where
    assert store.get() == UnlockKeys(CURRENT)
    store.put(UnlockKeys(CURRENT, PREVIOUS, 5.0))
    assert store.get() == UnlockKeys(CURRENT, PREVIOUS, 5.0)
    assert [p.name for p in store.path.parent.iterdir()] == [store.path.name]  # no partial left
    store.delete()
    store.delete()  # nothing to delete: no error
    assert store.get() is None


def test_clusters_of_one_name_in_two_state_dirs_keep_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    one = UnlockKeyFile(local_settings(tmp_path / "one"))
    two = UnlockKeyFile(local_settings(tmp_path / "two"))
    one.put(UnlockKeys(CURRENT))
    assert one.path != two.path and two.get() is None


def test_the_local_target_keeps_the_key_there_and_teardown_removes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    settings = local_settings(tmp_path / "state")
    store = target_for(settings).unlock_key_store()
    assert isinstance(store, UnlockKeyFile)
    store.put(UnlockKeys(CURRENT))
    target_for(settings).unlock_key_store().delete()
    assert store.get() is None


# -- aws, on moto's server -------------------------------------------------------------------


def aws_settings(endpoint: str, tmp_path: Path, cluster: str, **more: Any) -> Settings:
    return load_settings({"target": "aws", "cluster": cluster, "region": REGION,
                          "aws_endpoint": endpoint, "state_dir": str(tmp_path / "state"),
                          **more}, {})


def test_the_aws_store_is_a_secure_string(endpoint: str, tmp_path: Path) -> None:
    store = UnlockKeyParameter(aws_settings(endpoint, tmp_path, "al-ssm"))
    assert store.get() is None
    store.put(UnlockKeys(CURRENT))
    store.put(UnlockKeys(CURRENT, PREVIOUS, 7.0))  # overwritten, one parameter
    ssm = client("ssm", REGION, endpoint)
    found = ssm.get_parameter(Name="/swarmforge/al-ssm/unlock-key")["Parameter"]
    assert found["Type"] == "SecureString"
    assert store.get() == UnlockKeys(CURRENT, PREVIOUS, 7.0)
    assert store.where == f"SSM SecureString {parameter_name('al-ssm')} in {REGION}"
    store.delete()
    store.delete()
    assert store.get() is None


def test_the_aws_store_uses_the_kms_key_set(endpoint: str, tmp_path: Path) -> None:
    kms = client("kms", REGION, endpoint)
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    store = UnlockKeyParameter(aws_settings(endpoint, tmp_path, "al-kms",
                                            unlock_key_kms_key_id=arn))
    store.put(UnlockKeys(CURRENT))
    ssm = client("ssm", REGION, endpoint)
    described = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [parameter_name("al-kms")]}])["Parameters"]
    assert described[0]["KeyId"] == arn
    assert store.get() == UnlockKeys(CURRENT)


def test_the_kms_key_setting_must_be_an_arn(tmp_path: Path) -> None:
    from swarmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="unlock_key_kms_key_id"):
        load_settings({"target": "aws", "cluster": "al-x", "region": REGION,
                       "state_dir": str(tmp_path), "unlock_key_kms_key_id": "alias/mine"}, {})
