"""What the benchmarks share: timed runs of the real CLI, the floor on bare sandbox hosts, tables.

The floor is what a plain script does on identical fresh sandbox hosts, made by
the sandbox's own ``host-up`` command (the one Terraform's local-exec runs):
``docker swarm init``, the join tokens read into memory, the joins in parallel
over SSH. Tokens never reach argv or a file there either: a join request goes to
the node's Docker API on ssh's stdin, as ``scripts/swarm-node.sh`` posts it from
a 0700 file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(REPO))

from swarmforge.ssh import SshProfile  # noqa: E402
from swarmforge.targets.local.host import remove_sandbox  # noqa: E402
from swarmforge.targets.local.sandbox import Sandbox  # noqa: E402
from swarmforge.targets.local.trust import ensure_trust  # noqa: E402

STEP_START = re.compile(r"^==> (.*)$")
STEP_END = re.compile(r"^    \((\d+\.\d)s\)$")
JOIN_PORT = 2377
# The join request arrives on stdin: the token is in no argv and no file.
JOIN_VIA_API = ('curl -sS --unix-socket "${DOCKER_HOST#unix://}" -X POST '
                "-H 'Content-Type: application/json' --data-binary @- "
                "-w '\\n%{http_code}' http://docker/swarm/join")
NODE_STATES = "docker node ls --format '{{.Status}} {{.ManagerStatus}}'"


def invoke_argv() -> list[str]:
    """The `invoke` an operator runs: the one beside this Python (``.venv/bin/invoke``)."""
    script = Path(sys.executable).parent / "invoke"
    return [str(script)] if script.exists() else [sys.executable, "-m", "invoke"]


def repo_env(repo: Path) -> dict[str, str]:
    """Environment that makes a child (and Terraform's local-exec under it) import ``repo``'s
    swarmforge rather than this checkout's."""
    if repo.resolve() == REPO:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}


def baseline_repo(path: str | None) -> Path | None:
    """A checkout to compare with (``--baseline DIR``): it needs its own tasks.py and
    swarmforge/, and a ``.tools`` (the provider mirror), e.g. a symlink to this one's."""
    if not path:
        return None
    repo = Path(path).resolve()
    for needed in ("tasks.py", "swarmforge/__init__.py", ".tools/providers"):
        if not (repo / needed).exists():
            raise SystemExit(f"--baseline {repo}: no {needed} there")
    return repo


def new_name(kind: str) -> str:
    """A cluster name of our own: ``bench-<kind>-<6 hex>`` (24 characters at most)."""
    return f"bench-{kind}-{uuid.uuid4().hex[:6]}"


# -- timed commands -------------------------------------------------------------


@dataclass
class Timed:
    """A finished command: wall time, exit status, output, and its progress steps."""

    argv: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: list[tuple[float, str]]  # (seconds since start, line)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def steps(self) -> list[tuple[str, float, float]]:
        """swarmforge's progress steps: (title, started at, seconds), from ``==>`` to ``(N.Ns)``."""
        open_steps: list[tuple[str, float]] = []
        done = []
        for at, line in self.stderr:
            if match := STEP_START.match(line):
                open_steps.append((match.group(1), at))
            elif STEP_END.match(line) and open_steps:
                title, started = open_steps.pop()
                done.append((title, started, at - started))
        return sorted(done, key=lambda step: step[1])

    def tail(self, lines: int = 30) -> str:
        return "\n".join(line for _, line in self.stderr[-lines:])


def timed(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 1800,
          stdin: str | None = None, cwd: Path = REPO) -> Timed:
    """Run ``argv``, timing it and each stderr line as it comes."""
    started = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=child_env(env), text=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its Terraform and ssh go with it
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    def read_stdout() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    readers = [threading.Thread(target=read_stderr), threading.Thread(target=read_stdout)]
    for reader in readers:
        reader.start()
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    # A blocking wait: Popen.wait(timeout=...) polls, in steps of up to 50 ms, which would
    # round every time up to the next step (a 0.3 s plan then reads 0.32 or 0.37).
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        with contextlib.suppress(ProcessLookupError):  # it ended just now
            os.killpg(proc.pid, signal.SIGKILL)

    overdue = threading.Timer(timeout, stop)
    overdue.start()
    try:
        returncode = proc.wait()
    finally:
        overdue.cancel()
    seconds = time.monotonic() - started
    if fired.is_set():
        raise subprocess.TimeoutExpired(list(argv), timeout)
    for reader in readers:
        reader.join()
    return Timed(list(argv), seconds, returncode, "".join(out), lines)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment for a timed child, with Python's bytecode cache on, as a user has it
    (some CI images set PYTHONDONTWRITEBYTECODE: every start-up would then recompile
    whatever changed since the last cached run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {})}


def must(result: Timed, what: str) -> Timed:
    if not result.ok:
        raise SystemExit(f"{what} failed (exit {result.returncode}):\n{result.tail()}\n{result.stdout}")
    return result


# -- the pipeline under test ------------------------------------------------------


class PipelineCluster:
    """A cluster driven through the real `invoke` CLI, its state in a temp dir of its own.

    ``repo`` is the checkout whose tasks and package run (another one than this
    for a before/after comparison within one run: see ``--baseline``).
    """

    def __init__(self, kind: str, state_root: Path, repo: Path = REPO, name: str | None = None) -> None:
        self.name = name or new_name(kind)
        self.state_root = state_root
        self.repo = repo
        self.env = {"INVOKE_SWARMFORGE_STATE_DIR": str(state_root), **repo_env(repo)}

    @property
    def dir(self) -> Path:
        return self.state_root / self.name

    @property
    def terraform_log(self) -> Path:
        return self.dir / "terraform.log"

    def log_size(self) -> int:
        return self.terraform_log.stat().st_size if self.terraform_log.exists() else 0

    def invoke(self, *args: str) -> Timed:
        return timed([*invoke_argv(), *args, "--cluster", self.name], env=self.env, cwd=self.repo)

    def apply(self, managers: int, workers: int, *extra: str) -> Timed:
        return must(self.invoke("apply", "--managers", str(managers), "--workers", str(workers),
                                *extra), f"invoke apply on {self.name}")

    def ssh_config(self) -> Path:
        return self.dir / "ssh" / "config"

    def ssh(self, host: str, command: str) -> str:
        return ssh(self.ssh_config(), host, command)

    def status(self) -> dict:
        result = must(self.invoke("status", "--json"), "invoke status")
        data: dict = json.loads(result.stdout)
        return data

    def destroy(self) -> Timed:
        return self.invoke("destroy", "--yes")


# -- the floor --------------------------------------------------------------------


@dataclass
class FloorTimes:
    """What the floor script spent, by step (host creation is kept apart)."""

    hosts: float = 0.0  # fresh hosts, in parallel: excluded from the floor, shown beside it
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def swarm(self) -> float:
        return sum(self.steps.values())

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.steps[name] = self.steps.get(name, 0.0) + time.monotonic() - started


class FloorCluster:
    """Bare sandbox hosts made by the sandbox's own ``host-up``, and a swarm made by hand."""

    def __init__(self, kind: str, state_root: Path, repo: Path = REPO) -> None:
        self.name = new_name(kind)
        self.repo = repo  # whose `sandbox host-up` makes the hosts
        self.sandbox = Sandbox(self.name, state_root / self.name / "ssh")
        self.state_dir = state_root / self.name
        self.profile: SshProfile | None = None
        self.network = ""
        self.hosts: dict[str, str] = {}  # hostname -> address

    def prepare(self) -> None:
        layout = self.sandbox.prepare()
        self.profile = ensure_trust(layout)
        self.network = layout.network

    def address(self, role: str, index: int) -> str:
        """The address Terraform gives the same node: manager slot s at .10+s, worker i at .100+i."""
        offset = 10 + index if role == "manager" else 100 + index
        return str(ipaddress.ip_network(self.network)[offset])

    def hostname(self, role: str, index: int) -> str:
        return f"{self.name}-{role}-{index}"

    def hosts_up(self, nodes: Sequence[tuple[str, int]]) -> float:
        """Create these (role, index) hosts, all at once, as Terraform's local-exec does."""
        started = time.monotonic()
        specs = [(self.hostname(r, i), self.address(r, i)) for r, i in nodes]
        command = str(self.sandbox.dir / "sandbox")

        def up(spec: tuple[str, str]) -> None:
            result = subprocess.run([command, "host-up", *spec], capture_output=True, text=True,
                                    env=child_env(repo_env(self.repo)), check=False)
            if result.returncode != 0:
                raise SystemExit(f"host-up {spec[0]} failed: {result.stderr.strip()}")

        with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
            list(pool.map(up, specs))
        self.hosts.update(dict(specs))
        return time.monotonic() - started

    def host_down(self, role: str, index: int) -> float:
        started = time.monotonic()
        hostname = self.hostname(role, index)
        subprocess.run([str(self.sandbox.dir / "sandbox"), "host-down", hostname],
                       capture_output=True, env=child_env(repo_env(self.repo)), check=False)
        self.hosts.pop(hostname, None)
        return time.monotonic() - started

    def ssh(self, host: str, command: str, stdin: str | None = None) -> str:
        assert self.profile is not None
        return ssh(self.profile.config, host, command, stdin)

    # -- the swarm, by hand -------------------------------------------------------

    def init(self, manager: str) -> None:
        self.ssh(manager, f"docker swarm init --advertise-addr {manager} >/dev/null")

    def tokens(self, manager: str) -> tuple[str, str]:
        """(manager token, worker token), in memory only."""
        out = self.ssh(manager, "docker swarm join-token -q manager && docker swarm join-token -q worker")
        manager_token, worker_token = out.split()
        return manager_token, worker_token

    def join(self, host: str, token: str, manager: str) -> None:
        request = json.dumps({"ListenAddr": f"0.0.0.0:{JOIN_PORT}", "AdvertiseAddr": f"{host}:{JOIN_PORT}",
                              "RemoteAddrs": [f"{manager}:{JOIN_PORT}"], "JoinToken": token})
        out = self.ssh(host, JOIN_VIA_API, stdin=request)
        if not out.rstrip().endswith("200"):
            raise SystemExit(f"join of {host} refused: {out.rsplit(chr(10), 1)[-1]}")

    def join_all(self, joins: Sequence[tuple[str, str]], manager: str) -> None:
        """Join (host, token) pairs in parallel, through ``manager``."""
        with ThreadPoolExecutor(max_workers=max(1, len(joins))) as pool:
            list(pool.map(lambda j: self.join(j[0], j[1], manager), joins))

    def wait_formed(self, manager: str, managers: int, nodes: int, timeout: float = 120) -> None:
        """One check, as the recipe's step 5: every node Ready, every manager Leader/Reachable."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [line.split() for line in self.ssh(manager, NODE_STATES).splitlines() if line]
            ready = sum(row[0] == "Ready" for row in rows)
            sound_managers = sum(len(row) > 1 and row[1] in ("Leader", "Reachable") for row in rows)
            if len(rows) == nodes and ready == nodes and sound_managers == managers:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"floor swarm not formed after {timeout}s: {rows}")
            time.sleep(0.1)

    def form(self, managers: int, workers: int) -> FloorTimes:
        """Fresh hosts (timed apart), then init, tokens, joins in parallel, and one check."""
        times = FloorTimes()
        times.hosts = self.hosts_up([("manager", i) for i in range(managers)]
                                    + [("worker", i) for i in range(workers)])
        first = self.address("manager", 0)
        with times.step("init"):
            self.init(first)
        with times.step("tokens"):
            manager_token, worker_token = self.tokens(first)
        joins = ([(self.address("manager", i), manager_token) for i in range(1, managers)]
                 + [(self.address("worker", i), worker_token) for i in range(workers)])
        with times.step("joins"):
            self.join_all(joins, first)
        with times.step("check"):
            self.wait_formed(first, managers, managers + workers)
        return times

    def teardown(self) -> None:
        assert self.profile is not None or not self.hosts
        if self.profile:
            for address in self.hosts.values():
                subprocess.run(["ssh", "-F", str(self.profile.config), "-O", "exit", address],
                               capture_output=True, check=False)
        remove_sandbox(self.sandbox)
        if self.profile:
            shutil.rmtree(self.profile.control_dir, ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def ssh(config: Path, host: str, command: str, stdin: str | None = None) -> str:
    result = subprocess.run(["ssh", "-F", str(config), host, command], input=stdin,
                            capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"ssh {host} {command!r} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


# -- Terraform's own timings --------------------------------------------------------


def terraform_events(log: Path, offset: int = 0) -> list[dict]:
    """Terraform's JSON events in the cluster's terraform.log, from byte ``offset`` on."""
    if not log.exists():
        return []
    with log.open() as handle:
        handle.seek(offset)
        return [json.loads(line) for line in handle if line.startswith('{"@level"')]


def host_seconds(events: Sequence[dict]) -> float:
    """Wall time during which at least one sandbox host was being made or removed.

    Hosts are made (and removed) by local-exec provisioners, as EC2 makes an
    instance: the union of their intervals is the part of a run the floor
    does not pay, so it is taken out of the comparable numbers.
    """
    spans: dict[str, list[float]] = {}
    intervals = []
    for event in events:
        hook = event.get("hook", {})
        if hook.get("provisioner") != "local-exec":
            continue
        key = hook["resource"]["addr"]
        at = datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp()
        if event["type"] == "provision_start":
            spans[key] = [at]
        elif event["type"] in ("provision_complete", "provision_errored") and key in spans:
            intervals.append((spans.pop(key)[0], at))
    return union_length(intervals)


def provisioner_seconds(events: Sequence[dict]) -> dict[str, list[float]]:
    """Terraform's own timing of each provisioner, by kind and order within a node
    ("local-exec", "file", "remote-exec 1", "remote-exec 2"): one value per node."""
    started: dict[str, float] = {}
    seen: dict[str, list[str]] = {}
    found: dict[str, list[float]] = {}
    for event in events:
        hook = event.get("hook", {})
        if "provisioner" not in hook or "resource" not in hook:
            continue
        node, kind = hook["resource"]["addr"], hook["provisioner"]
        at = datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp()
        if event["type"] == "provision_start":
            started[node] = at
            seen.setdefault(node, []).append(kind)
        elif event["type"] == "provision_complete" and node in started:
            count = seen[node].count(kind)
            name = kind if kind != "remote-exec" else f"{kind} {count}"
            found.setdefault(name, []).append(at - started.pop(node))
    return found


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def terraform_commands(events_log: Path, offset: int = 0) -> list[tuple[str, float]]:
    """(command, seconds) of each Terraform command the adapter logged, from ``offset`` on."""
    if not events_log.exists():
        return []
    with events_log.open() as handle:
        handle.seek(offset)
        found = []
        for line in handle:
            match = re.match(r"^\$ \S+ (\S+).*\(exit \d+, (\d+\.\d)s\)$", line)
            if match:
                found.append((match.group(1), float(match.group(2))))
        return found


# -- reporting ----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """One line: cores, RAM, OS, kernel, Terraform, date."""
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    os_name = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    terraform = shutil.which("terraform")
    version = "none on PATH"
    if terraform:
        out = subprocess.run([terraform, "version", "-json"], capture_output=True, text=True,
                             check=False, env={**os.environ, "CHECKPOINT_DISABLE": "1"}).stdout
        version = json.loads(out or "{}").get("terraform_version", "?")
    return (f"{os.cpu_count()} cores, {mem_kb / 1024 / 1024:.0f} GiB RAM, {os_name}, "
            f"kernel {platform.release()}, Terraform {version}, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {load()}")


@contextmanager
def state_root() -> Iterator[Path]:
    """A state dir under /tmp for this run's clusters; removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="swarmforge-bench-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmarks build sandbox hosts: run them as root")


class Cleanup:
    """Tear down every cluster made, whatever happens (even on Ctrl-C)."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, action: Callable[[], object]) -> None:
        self.actions.append((what, action))

    def run(self) -> None:
        while self.actions:
            what, action = self.actions.pop()
            try:
                action()
            except (Exception, SystemExit) as exc:  # keep cleaning the rest
                print(f"cleanup of {what} failed: {exc}", file=sys.stderr)

    def __enter__(self) -> Cleanup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.run()


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
