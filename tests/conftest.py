"""Shared fixtures: the sandbox tests run the real pipeline (real Terraform, sshd, dockerd)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parent.parent
INVOKE = [sys.executable, "-m", "invoke"]
OFFLINE_TERRAFORM = REPO / ".tools" / "terraform" / "terraform"

# A suite started in the background of a non-interactive shell (`cmd &`) inherits SIGINT
# ignored, and so would every child it starts, which cannot then trap it: the Ctrl-C and
# deadline tests need SIGINT as a terminal leaves it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def sandbox_ready() -> str | None:
    """Why the sandbox tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("dockerd", "sshd", "ip", "iptables", "nsenter", "unshare", "ssh", "curl"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            return f"{tool} is not installed (run scripts/setup-host.sh)"
    if not OFFLINE_TERRAFORM.exists():
        return "the offline Terraform build is missing (run scripts/setup-host.sh)"
    return None


def unique_cluster(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def invoke(*args: str, state_dir: Path, env: dict[str, str] | None = None,
           stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a task through the real `invoke` CLI, as an operator would."""
    child_env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(state_dir), **(env or {})}
    return subprocess.run([*INVOKE, *args], cwd=REPO, env=child_env, capture_output=True,
                          text=True, timeout=timeout, input=stdin, check=False)


# --- the suite in parallel: scripts/test.sh runs pytest -n N (pytest-xdist) ------------------
#
# A test file is one unit of work, run by one worker in file order: its tests share the
# module's cluster (and moto server). The files below are one unit together: some watch
# every process and file on the machine for a join token, the others run processes that
# hold made-up ones; side by side, a watcher would see those.
TOKEN_WATCH = "token-watch"
TOKEN_WATCH_FILES = ("test_pipeline_local.py", "test_token_lifetime.py", "test_terraform.py",
                     "test_redaction.py", "test_child_environment.py")
# The longest units first (sandbox clusters, minutes each; as measured on 3 workers): one
# started last would finish last, alone. Every other unit follows in file order.
LONGEST_FIRST = ("test_replace_node.py", "test_rebuild_local.py", TOKEN_WATCH, "test_rebuild.py",
                 "test_chaos.py", "test_backup_restore.py", "test_local_roll.py", "test_heal.py",
                 "test_rebuild_deadline.py", "test_autolock.py", "test_scale_in.py",
                 "test_spot.py", "test_access.py", "test_aws_preflight.py", "test_image_locks.py",
                 "test_lease.py",
                 "test_aws_target.py", "test_amis.py", "test_local_bake.py",
                 "test_swarm_node_script.py", "test_failures_local.py", "test_aws_instances.py",
                 "test_state_in_s3.py", "test_state_dir_safety.py", "test_replace_resume.py",
                 "test_unprivileged.py")


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or TOKEN_WATCH."""
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return TOKEN_WATCH if name in TOKEN_WATCH_FILES else name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: the longest units first; the scheduler keeps this order."""
    if hasattr(config, "workerinput"):
        rank = {unit: index for index, unit in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: without it, never called
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # by the number of tests, it would put them last
    return ByWorkUnit(config, log)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (real HTTP, real boto3), with fake credentials in our
    environment and our children's, so nothing can reach real AWS."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_CONFIG_FILE", "/dev/null")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swarmforge-state")


@pytest.fixture
def require_sandbox() -> Iterator[None]:
    reason = sandbox_ready()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"sandbox tests must run in CI: {reason}")
        pytest.skip(reason)
    yield
