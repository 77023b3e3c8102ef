"""The aws target as a user who is not root (issue 15): a clean result, nothing under /run.

A system user of its own (tests/unprivileged.py), with a state dir it owns, runs the
real `invoke` against moto's server. `invoke status --target aws` goes through every
check and the SSH setup up to `terraform init`, which stops, in one line, at the
hashicorp/aws provider that cannot be installed (the registry is kept out of reach
for the child, so this holds on any machine). `invoke bake --target aws --dry-run`
validates the template. ssh's sockets go to the user's runtime dir
(swarmforge.runtime): $XDG_RUNTIME_DIR when it is the user's, else the state dir,
else /tmp/swarmforge-<uid>; one in /tmp that another user made first is refused in
one line, and so is a state dir the user may not write in. The local sandbox alone
needs root, and says so in one line.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import boto3
import pytest

from tests.unprivileged import Unprivileged, prepare, why_not

REGION: Final = "eu-west-1"
AMI = "ami-0123456789abcdef0"
SOCKET_PATH_MAX = 107
SOCKET_NAME = 40 + len(".") + 16  # ControlPath's %C, and ssh's temporary suffix while it binds
RUN = Path("/run")
# Terraform (Go) and botocore both honour these: the registry is out of reach, moto is not.
NO_REGISTRY = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": "127.0.0.1,localhost"}
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
NEEDS_ROOT = "swarmforge: the local sandbox needs root (network namespaces, dockerd): run as root"


@pytest.fixture(scope="session")
def user() -> Unprivileged:
    reason = why_not()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the unprivileged tests must run in CI: {reason}")
        pytest.skip(reason)
    return prepare()


@pytest.fixture
def home(user: Unprivileged) -> Iterator[Path]:
    """The user's own dir for this test: its $HOME, state dir, key and config file."""
    with user.private_tmp() as path:
        yield path


@pytest.fixture
def tmp_runtime(user: Unprivileged) -> Iterator[Path]:
    """/tmp/swarmforge-<uid>, the last resort: none before the test, none after."""
    with user.tmp_runtime() as path:
        yield path


@pytest.fixture
def aws(endpoint: str, user: Unprivileged, home: Path) -> dict[str, Any]:
    """A state bucket and an EC2 key pair in moto, the key's private half the user's:
    the `swarmforge:` settings that get `status` past the aws target's checks."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    bucket = f"swarmforge-unpriv-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user.give(key)
    key_name = f"swarmforge-{uuid.uuid4().hex[:8]}"
    ec2.import_key_pair(KeyName=key_name, PublicKeyMaterial=Path(f"{key}.pub").read_bytes())
    cluster = f"sfu-{uuid.uuid4().hex[:6]}"
    # The cluster exists, as another machine made it: its state in the bucket has a node
    # (`status` on a cluster that does not exist stops before anything is made).
    s3.put_object(Bucket=bucket, Key=f"swarmforge/{cluster}/terraform.tfstate",
                  Body=json.dumps(state_with_a_manager(cluster)).encode())
    return {"cluster": cluster, "region": REGION, "state_bucket": bucket,
            "state_region": REGION, "state_endpoint": endpoint, "aws_endpoint": endpoint,
            "key_name": key_name, "ssh_key": str(key), "allowed_ssh_cidrs": ["203.0.113.7/32"],
            "ami_id": AMI}


def state_with_a_manager(cluster: str) -> dict[str, Any]:
    """A Terraform state (as Terraform reads it) with one manager in its resources and outputs."""
    manager = {"name": f"{cluster}-manager-0", "private_ip": "10.0.0.10",
               "ssh_host": "203.0.113.10", "id": "i-0123456789abcdef0"}
    node = ["object", {key: "string" for key in manager}]
    return {"version": 4, "terraform_version": "1.5.7", "serial": 1, "lineage": str(uuid.uuid4()),
            "resources": [{"mode": "managed", "type": "aws_instance", "name": "swarm_manager",
                           "provider": 'provider["registry.terraform.io/hashicorp/aws"]',
                           "instances": []}],
            "outputs": {"managers": {"value": [manager], "type": ["tuple", [node]]},
                        "workers": {"value": [], "type": ["tuple", []]},
                        "joined": {"value": [manager["name"]], "type": ["tuple", ["string"]]}}}


def run_as(user: Unprivileged, home: Path, settings: dict[str, Any], *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``invoke -f <settings as a config file> ARGS`` as ``user``, with ``home`` as $HOME."""
    config = home / f"invoke-{uuid.uuid4().hex[:6]}.json"
    config.write_text(json.dumps({"swarmforge": settings}))
    user.give(config)
    return user.invoke("-f", str(config), *args,
                       env={"HOME": str(home), **FAKE_AWS, **NO_REGISTRY, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error: no traceback, and one line on stderr besides progress ("==> step")."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith(("==> ", "    "))]
    assert len(lines) == 1, result.stderr
    return lines[0]


def written_under_run(user: Unprivileged) -> list[Path]:
    """Whatever ``user`` owns under /run (nothing may be: only root's things go there)."""
    owned = []
    for top, dirs, files in os.walk(RUN):
        for name in dirs + files:
            path = Path(top) / name
            try:
                if path.lstat().st_uid == user.uid:
                    owned.append(path)
            except OSError:  # gone meanwhile
                continue
    return owned


def private_to(user: Unprivileged, path: Path) -> bool:
    found = path.lstat()
    return (stat.S_ISDIR(found.st_mode) and found.st_uid == user.uid
            and stat.S_IMODE(found.st_mode) == 0o700)


def control_dir(state_dir: Path, cluster: str) -> Path:
    """The dir of the ControlPath the aws target wrote into the cluster's ssh_config."""
    config = (state_dir / cluster / "ssh" / "config").read_text()
    path = next(line.split(None, 1)[1] for line in config.splitlines()
                if line.strip().startswith("ControlPath "))
    assert path.endswith("/%C"), path
    return Path(path).parent


# --- aws: status gets as far as this machine lets it, bake --dry-run validates -----------------


@pytest.mark.parametrize("runtime", ["xdg", "xdg of another user", "state dir", "tmp"])
def test_status_on_aws_runs_as_a_user_and_keeps_its_sockets_private(
        user: Unprivileged, home: Path, aws: dict[str, Any], tmp_runtime: Path,
        runtime: str) -> None:
    # A state dir too long for sockets leaves /tmp/swarmforge-<uid> as the only place.
    state_dir = home / ("state" if runtime != "tmp" else "s" * 60)
    cluster = aws["cluster"]
    # Short, as real ones are (/run/user/<uid>); root's, as after `su` without `-`, is not used.
    with user.private_tmp("sfx-", mine=runtime == "xdg") as xdg:
        env = {"XDG_RUNTIME_DIR": str(xdg)} if runtime.startswith("xdg") else {}

        result = run_as(user, home, {**aws, "state_dir": str(state_dir)}, "status", "--target",
                        "aws", env=env)

        assert result.returncode == 1, result.stderr
        # terraform/aws needs hashicorp/aws and hashicorp/null: init names whichever failed first.
        assert re.fullmatch(
            r"swarmforge: terraform init cannot install provider hashicorp/(aws|null): could not "
            r"connect to registry\.terraform\.io; full log: "
            + re.escape(str(state_dir / cluster / "terraform.log")), one_line_error(result))
        control = control_dir(state_dir, cluster)
        assert control.parent == {"xdg": xdg / "swarmforge", "tmp": tmp_runtime}.get(
            runtime, state_dir / "_run")
        assert private_to(user, control) and private_to(user, control.parent)
        assert RUN not in control.parents
        assert len(os.fsencode(control)) + len("/") + SOCKET_NAME <= SOCKET_PATH_MAX
        assert written_under_run(user) == []


def test_a_runtime_dir_another_user_made_first_is_refused_in_one_line(
        user: Unprivileged, home: Path, aws: dict[str, Any], tmp_runtime: Path) -> None:
    tmp_runtime.mkdir(mode=0o777)  # root's, open to all: whoever made it may read the sockets
    state_dir = home / ("s" * 60)

    result = run_as(user, home, {**aws, "state_dir": str(state_dir)}, "status", "--target", "aws")

    assert result.returncode == 1, result.stderr
    assert one_line_error(result) == (
        f"swarmforge: {tmp_runtime} belongs to root (uid 0), not to you ({user.name} (uid "
        f"{user.uid})): swarmforge keeps what is yours alone there; remove it, or set "
        "XDG_RUNTIME_DIR or swarmforge.state_dir to a dir of yours")
    assert list(tmp_runtime.iterdir()) == []
    assert written_under_run(user) == []


def test_bake_dry_run_on_aws_runs_as_a_user(user: Unprivileged, home: Path,
                                           aws: dict[str, Any]) -> None:
    state_dir = home / "state"

    result = run_as(user, home, {**aws, "state_dir": str(state_dir)}, "bake", "--target", "aws",
                    "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing built (--dry-run)" in result.stdout
    assert written_under_run(user) == []


@pytest.mark.parametrize("task", [["status"], ["bake", "--dry-run"]])
def test_a_state_dir_the_user_may_not_write_in_is_one_line(
        user: Unprivileged, home: Path, aws: dict[str, Any], task: list[str]) -> None:
    state_dir = home / "roots"
    state_dir.mkdir(mode=0o755)  # root's, as the repo's .swarmforge/ after a run as root

    result = run_as(user, home, {**aws, "state_dir": str(state_dir)}, *task, "--target", "aws")

    assert result.returncode == 1, result.stderr
    assert one_line_error(result).startswith(f"swarmforge: permission denied: {state_dir}/")
    assert list(state_dir.iterdir()) == []
    assert written_under_run(user) == []


# --- local: the sandbox alone needs root, and says so ----------------------------------------


@pytest.mark.parametrize("task", ["status", "apply"])
def test_the_local_sandbox_says_in_one_line_that_it_needs_root(user: Unprivileged, home: Path,
                                                                task: str) -> None:
    cluster = f"sfu-{uuid.uuid4().hex[:6]}"
    if task == "status":  # of a cluster that exists, its state the user's, never reached here
        state = home / "state" / cluster / "terraform" / "terraform.tfstate"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps(state_with_a_manager(cluster)))
        for made in (state, *state.parents):
            if made == home:
                break
            user.give(made)
    result = run_as(user, home, {"state_dir": str(home / "state"), "cluster": cluster}, task,
                    "--target", "local")

    assert result.returncode == 1, result.stderr
    assert one_line_error(result) == NEEDS_ROOT
    assert written_under_run(user) == []
