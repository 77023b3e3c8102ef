"""Running swarmforge as an unprivileged user, as CI runners and laptops do.

The user is a system user of its own (``sfuser``, made if missing). The python
the tests run on lives in root's home, closed to others: the user gets a venv of
its own, from Debian's /usr/bin/python3, with swarmforge's dependencies in it
(swarmforge itself comes from this repo, on PYTHONPATH: never stale, and nothing
is written into the repo). The venv is made once and kept in .tools/unpriv-venv
(``scripts/setup-host.sh`` runs ``python -m tests.unprivileged``; a test that
finds it missing or out of date makes it, under a file lock), as a pip install
costs a minute. Made by root and readable by all, the user cannot change it.

Run as root: only root can become another user (``setpriv``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USER = "sfuser"
VENV = REPO / ".tools" / "unpriv-venv"
LOCK = REPO / ".tools" / "unpriv-venv.lock"
TMP_RUNTIME_LOCK = REPO / ".tools" / "unpriv-tmp-runtime.lock"
STAMP = VENV / "swarmforge-stamp"  # what the venv was made from: python and dependencies
SYSTEM_PYTHON = Path("/usr/bin/python3")
NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True)
class Unprivileged:
    """A user that is not root, and the venv it runs swarmforge from."""

    name: str
    uid: int
    gid: int
    venv: Path

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path = REPO,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``argv`` as this user, with exactly ``env`` (plus PATH and the like, see env())."""
        switch = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]
        return subprocess.run([*switch, *argv], env=self.env(env), cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def invoke(self, *args: str, env: Mapping[str, str],
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``invoke ARGS`` in the repo (its tasks.py), as this user, from its own venv."""
        return self.run([str(self.venv / "bin" / "invoke"), *args], env=env, timeout=timeout)

    def env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """A clean environment: nothing of root's leaks in ($HOME, $XDG_RUNTIME_DIR, ...).

        PYTHONPATH: the code of the tree these tests are in, whatever the venv points at."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO), **extra}

    @contextlib.contextmanager
    def private_tmp(self, prefix: str = "sf-unpriv-", *, mine: bool = True) -> Iterator[Path]:
        """A fresh dir under /tmp that this user owns (root, if not ``mine``), mode 0700
        (pytest's own tmp dirs are in root's /tmp/pytest-of-root, which nobody else may
        enter); removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        try:
            if mine:
                os.chown(path, self.uid, self.gid)
            os.chmod(path, 0o700)
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def tmp_runtime(self) -> Iterator[Path]:
        """/tmp/swarmforge-<uid>, the runtime dir of last resort: none before, none after, and
        one test at a time has it (two pytest runs may share this user)."""
        path = Path(f"/tmp/swarmforge-{self.uid}")
        with TMP_RUNTIME_LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            shutil.rmtree(path, ignore_errors=True)
            try:
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)

    def give(self, path: Path) -> Path:
        """Hand ``path`` (made by root) to this user."""
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        return path


def why_not() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root, to run as another user"
    for tool in ("setpriv", "useradd"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing (apt-get install python3-venv)"
    return None


def prepare(name: str = USER) -> Unprivileged:
    """The user and its venv, made if missing or out of date; idempotent, and safe when
    several processes try at once."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        account = ensure_user(name)
        user = Unprivileged(name, account.pw_uid, account.pw_gid, VENV)
        _require_readable(user, REPO / "tasks.py")
        ensure_venv(user)
        return user


def ensure_user(name: str) -> pwd.struct_passwd:
    """A system user ``name`` with a group of its own, no home and no login shell."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    _check(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
            "--shell", NOLOGIN, name], f"make the user {name}")
    return pwd.getpwnam(name)


def ensure_venv(user: Unprivileged) -> None:
    """``user.venv``, with swarmforge's dependencies: made again when they changed, or when
    the venv does not run for ``user``."""
    wanted = _stamp()
    if _venv_works(user) and STAMP.exists() and STAMP.read_text() == wanted:
        return
    print(f"==> {user.venv}: a venv for {user.name} from {SYSTEM_PYTHON} (pip, about a minute)",
          file=sys.stderr, flush=True)
    shutil.rmtree(user.venv, ignore_errors=True)
    _check([str(SYSTEM_PYTHON), "-m", "venv", str(user.venv)], "python3 -m venv")
    pip = [str(user.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    _check([*pip, "install", *dependencies()], "pip install (swarmforge's dependencies)")
    _open_to_all(user.venv)
    if not _venv_works(user):
        raise RuntimeError(f"{user.venv} does not run for {user.name}: see above")
    STAMP.write_text(wanted)


def dependencies() -> list[str]:
    """What swarmforge needs to run, from pyproject.toml. swarmforge itself is not installed:
    it comes from the repo (PYTHONPATH), so the venv never runs stale code nor writes there."""
    import tomllib  # Python 3.11+, as the test venv

    with (REPO / "pyproject.toml").open("rb") as pyproject:
        wanted: list[str] = tomllib.load(pyproject)["project"]["dependencies"]
    return wanted


def _stamp() -> str:
    made_from = "\n".join([str(SYSTEM_PYTHON.resolve()), *dependencies()])
    return hashlib.sha256(made_from.encode()).hexdigest()


def _venv_works(user: Unprivileged) -> bool:
    python = user.venv / "bin" / "python"
    if not python.exists():
        return False
    # The dependencies only: a tree that does not import today is no reason to make it again.
    probe = user.run([str(python), "-c", "import boto3, invoke, jinja2, packaging, python_terraform"],
                     env={"HOME": "/nonexistent", "PYTHONPATH": ""}, cwd=Path("/"), timeout=60)
    return probe.returncode == 0


def _open_to_all(root: Path) -> None:
    """Readable (and dirs enterable) by everyone, whatever root's umask was; writable by root
    alone. Only in ``root``, which is ours (.tools/)."""
    for path in [root, *root.rglob("*")]:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            continue
        extra = 0o055 if stat.S_ISDIR(mode) or mode & 0o100 else 0o044
        os.chmod(path, (stat.S_IMODE(mode) | extra) & ~0o022)


def _require_readable(user: Unprivileged, path: Path) -> None:
    """The repo must be readable by ``user`` (every dir on the way enterable); never chmodded."""
    probe = user.run(["test", "-r", str(path)], env={"HOME": "/nonexistent"}, cwd=Path("/"))
    if probe.returncode != 0:
        raise RuntimeError(f"{path} is not readable by {user.name}: the unprivileged tests need "
                           f"the repo (and every dir above it) readable by other users")


def _check(argv: Sequence[str], what: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")


def main() -> int:
    reason = why_not()
    if reason:
        print(f"unprivileged: {reason}", file=sys.stderr)
        return 1
    user = prepare()
    print(f"    {user.name} (uid {user.uid}), {user.venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
