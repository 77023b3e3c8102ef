"""What formation and a roll would take on AWS, from the pipeline's own code and published
EC2 latencies: a simulation this machine can run (it cannot boot EC2 instances).

    .venv/bin/python benchmarks/aws_model.py [--parallelism 10] [--sweep 10,25,50,100]

The pipeline itself runs, as `invoke apply --target aws` and `invoke roll` run it:
``Cluster.apply``, ``roll()`` and ``Replacement`` with their real steps, order, checks,
``Swarm`` (health, drain, demote, tokens), ``HostKeyPins`` and the aws target's own
``node_facts``/``manager_address`` look-ups. Below them, where the real thing leaves this
process, stand simulations, on a virtual clock:

- EC2: instances that go pending -> running -> SSH ready at published latencies, and
  EC2's token-bucket throttling per API (AWS's documented bucket sizes and refill
  rates), answered with back-off and jitter as the SDKs do;
- Terraform: the plan/apply of terraform/aws as a graph walk that honours
  ``-parallelism``: data sources, a refresh of every resource in the state (the calls
  the AWS provider makes per ``aws_instance``), then the changes (RunInstances and the
  provider's running-state waiter, TerminateInstances, the swarm steps' three SSH
  provisioners and the join);
- SSH and Docker on the nodes: our ``ssh`` commands (one handshake per node, then
  shared), the swarm's answers, the manager's CA signing each joining node's
  certificate one at a time, raft admitting one manager at a time.

Nothing is slept: a 7+500 formation is simulated in about a second. The numbers and
their sources are in the constants below and in benchmarks/RESULTS.md ("At AWS
scale"). The table's last line is the summary: formation against Docker for AWS's
documented 10-15 minutes, and a roll per worker against kops' rolling update per node.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import heapq
import inspect
import io
import itertools
import json
import math
import random
import re
import shutil
import sys
import tempfile
import threading
import types
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, ClassVar
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import swarmforge.cluster  # noqa: E402  (the repo first on sys.path)
import swarmforge.replacement  # noqa: E402
import swarmforge.state_file  # noqa: E402
import swarmforge.swarm  # noqa: E402
import swarmforge.targets.aws.host_keys  # noqa: E402
from swarmforge.cluster import Cluster  # noqa: E402
from swarmforge.node_facts import NodeFacts  # noqa: E402
from swarmforge.nodes import NodeRef, join_step_address, ref_for  # noqa: E402
from swarmforge.operation import Journal  # noqa: E402
from swarmforge.process import Completed  # noqa: E402
from swarmforge.progress import Progress  # noqa: E402
from swarmforge.replacement import StepFailed  # noqa: E402
from swarmforge.roll import roll  # noqa: E402
from swarmforge.settings import Settings  # noqa: E402
from swarmforge.ssh import SshProfile  # noqa: E402
from swarmforge.swarm import MANAGER_CHECK, NODE_QUERY, RECHECK, SWARM_STATE, Swarm  # noqa: E402
from swarmforge.targets.aws.host_keys import KEYS_BEGIN, KEYS_END, POLL, HostKeyPins  # noqa: E402
from swarmforge.targets.aws.instances import node_facts as aws_node_facts  # noqa: E402
from swarmforge.targets.aws.target import AwsTarget, manager_address  # noqa: E402
from swarmforge.terraform_output import Plan, PlannedChange  # noqa: E402
from swarmforge.unlock_keys import UnlockKeys  # noqa: E402

# --- published numbers -----------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """A latency that varies from machine to machine: log-normal through its median and p90."""

    median: float
    p90: float

    def at(self, q: float) -> float:
        """The latency at quantile ``q`` (0 < q < 1)."""
        sigma = math.log(self.p90 / self.median) / NormalDist().inv_cdf(0.9)
        return self.median * math.exp(sigma * NormalDist().inv_cdf(q))


@dataclass(frozen=True)
class Latencies:
    """Seconds. Sources and reasoning: benchmarks/RESULTS.md, "At AWS scale"."""

    api: float = 0.10  # one AWS API round trip from a runner outside the region
    run_instances: float = 1.5  # RunInstances' own answer (Percival 2021: 1.54 s)
    # pending -> running: Percival 2021 (c5, unencrypted): 4.9 s; brevdev 2025 (t3/m7i):
    # 16.4-16.6 s; EBS encryption (ours: encrypted = true) slows it (martysweet 2023).
    pending_to_running: Spread = Spread(10.0, 17.0)
    # running -> sshd answers (cloud-init, sshd): Percival 2021: 17.2 + 5.6 s (Linux AMIs
    # of the console's quick-launch menu); brevdev 2025: 3.2 s on Amazon Linux 2023.
    running_to_ssh: Spread = Spread(20.0, 30.0)
    keys_after_ssh: float = 2.0  # cloud-init prints the host keys to the console after sshd
    terminate: Spread = Spread(40.0, 70.0)  # shutting-down -> terminated (assumption)
    rtt: float = 0.05  # runner <-> node round trip (runner outside the region)
    ssh_crypto: float = 0.05  # key exchange and public-key auth, CPU on both ends
    docker_cli: float = 0.15  # one `docker ...` command on a node
    per_node_listed: float = 0.001  # NODE_QUERY (the API's node list), per node listed
    swarm_init: float = 2.0  # `docker swarm init`
    # The joins themselves, from the sandbox (RESULTS.md 1 and 4: worker ~0.4-0.5 s,
    # manager ~0.9 s on one machine), doubled for a network across AZs.
    worker_join: Spread = Spread(1.0, 1.6)
    manager_join: Spread = Spread(2.0, 3.0)
    ca_sign: float = 0.02  # the leader's CA signs one node certificate (a raft write)
    raft_admit: float = 0.5  # raft adds one manager (membership changes one at a time)
    ready_after_join: float = 1.0  # the node shows Ready in `docker node ls`
    leadership_transfer: float = 2.0  # a demoted leader hands over
    tasks_moved: float = 10.0  # a drained node's tasks run elsewhere (workload-dependent)
    cli_start: float = 1.0  # Python + Invoke + boto3 import (RESULTS.md 5, plus boto3)
    s3: float = 0.08  # one S3 request (lease, journal, state)
    tf_start: float = 3.0  # terraform + the AWS provider plugin start, state lock and read
    tf_init: float = 6.0  # `terraform init` with the provider in the plugin cache
    tf_cli: float = 1.0  # `terraform output`/`show`/`state mv` (no provider)
    tf_per_resource: float = 0.002  # Terraform core: graph, diff, JSON, per resource
    # A kops node on its way to Ready: the ASG reacts, the node boots, nodeup + kubelet register.
    kops_asg_reacts: float = 15.0
    kops_nodeup: float = 60.0


# EC2 request-rate buckets, one per API action (AWS evaluates each API on its own):
# (capacity, refill per second). https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html
NON_MUTATING = (100, 20)  # Describe*, Get*: the page's own DescribeHosts example
MUTATING = (50, 5)
REQUEST_BUCKETS = {
    "RunInstances": MUTATING, "TerminateInstances": MUTATING, "CreateSecurityGroup": MUTATING,
    "AuthorizeSecurityGroupIngress": MUTATING, "AuthorizeSecurityGroupEgress": MUTATING,
    "RevokeSecurityGroupEgress": MUTATING, "CreateTags": MUTATING, "DeleteTags": MUTATING,
}
# Resource buckets (instances, not requests): RunInstances 1000 / 2 per second is the page's
# own example; TerminateInstances 1000 / 20 per second.
RESOURCE_BUCKETS = {"RunInstances": (1000, 2), "TerminateInstances": (1000, 20)}
FILTER_VALUES_MAX = 200  # EC2: "The maximum number of filter values specified on a single call is 200"

# What terraform-provider-aws calls to read one aws_instance (resourceInstanceRead): the
# instance, its type (burstable?), its root volume, three attributes, its credit spec.
INSTANCE_READ = ("DescribeInstances", "DescribeInstanceTypes", "DescribeVolumes",
                 "DescribeInstanceAttribute", "DescribeInstanceAttribute",
                 "DescribeInstanceAttribute", "DescribeInstanceCreditSpecifications")
DATA_SOURCES = ("DescribeVpcs", "DescribeInstanceTypeOfferings", "DescribeSubnets")
# The provider's waiters (StateChangeConf): first look after Delay, then MinTimeout,
# doubling, at most 10 s between looks.
WAITER_DELAY, WAITER_MIN, WAITER_MAX = 10.0, 3.0, 10.0
SDK_MAX_BACKOFF = 20.0  # botocore's and the Go SDK's standard retryers: full jitter, <= 20 s
SSHD_MAX_STARTUPS = 10  # sshd's MaxStartups 10:30:100: past 10, connections are dropped
# json.loads of host_keys.json, per entry: 1.65 ms for 507 entries on the 2-core machine
# RESULTS.md describes. HostKeyPins.pin reads the file once per node it is given.
HOST_KEYS_PARSE = 3.3e-6

# The kops rolling update's defaults (cmd/kops/rolling-update_cluster.go, InitDefaults).
KOPS = {"post_drain_delay": 5.0, "node_interval": 15.0, "validate_count": 2,
        "validate_tick": 30.0, "validate_success": 10.0}
DOCKER_FOR_AWS = (600.0, 900.0)  # "10-15 minutes" for the CloudFormation stack

# --- the virtual clock and the event engine -----------------------------------------------


class World:
    """What exists outside this process: the clock, EC2, the swarm.

    Each thread of the pipeline has its own clock (a Terraform plan made beside the
    swarm steps, a health read beside a plan): a thread starts at its starter's time,
    and whoever joins it goes on from the later of the two."""

    def __init__(self, lat: Latencies, seed: int = 18) -> None:
        self.lat = lat
        self._clocks: dict[int, float] = {}
        self._main = threading.get_ident()
        self.now = 0.0
        self.seed = seed
        self.rng = random.Random(seed)
        self.buckets: dict[str, Bucket] = {}
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.machines: dict[str, Machine] = {}
        self.swarm = SwarmState()
        self.image = "ami-0000000000000000a"
        self.notes: set[str] = set()  # limits the run ran into, said once
        self.peaks: Counter[str] = Counter()  # the most of something at once
        self.terraform: ModelTerraform | None = None  # its state outlives each command
        self.spans: dict[str, float] = defaultdict(float)  # seconds, by what they went to
        self._open: dict[int, list[tuple[float, list[float]]]] = {}  # per thread: (start, [inner])

    @contextlib.contextmanager
    def span(self, what: str) -> Iterator[None]:
        """Time spent in the block, less what spans inside it counted for themselves."""
        stack = self._open.setdefault(threading.get_ident(), [])
        stack.append((self.now, [0.0]))
        try:
            yield
        finally:
            started, inner = stack.pop()
            elapsed = self.now - started
            self.spans[what] += elapsed - inner[0]
            if stack:
                stack[-1][1][0] += elapsed

    @property
    def now(self) -> float:
        return self._clocks.get(threading.get_ident(), self._clocks.get(self._main, 0.0))

    @now.setter
    def now(self, value: float) -> None:
        self._clocks[threading.get_ident()] = value

    def thread_ends(self) -> None:
        self._clocks.pop(threading.get_ident(), None)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def serial_call(self, api: str, resources: int = 0) -> None:
        """One call from our own process (boto3), throttled like any other."""
        engine = Engine(self)
        engine.start(engine.call(api, resources))
        engine.run()

    def quantile(self, name: str, what: str) -> float:
        """A machine's own, stable place in a spread (the same machine, the same draw)."""
        return (zlib.crc32(f"{self.seed}/{name}/{what}".encode()) % 9973 + 0.5) / 9973

    def note(self, line: str) -> None:
        self.notes.add(line)


@dataclass
class Bucket:
    capacity: float
    refill: float
    tokens: float
    at: float = 0.0

    def take(self, now: float, n: int = 1) -> bool:
        if now > self.at:  # threads' clocks interleave: a call from the past refills nothing
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.refill)
            self.at = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class Event:
    """Something processes wait for: a task done."""

    def __init__(self) -> None:
        self.fired = False
        self.waiters: list[Any] = []


class Slots:
    """At most ``size`` holders at once (Terraform's -parallelism, a serial server)."""

    def __init__(self, size: int, name: str) -> None:
        self.free = size
        self.name = name
        self.waiters: deque[Any] = deque()


Process = Generator[Any, Any, None]


class Engine:
    """Processes (generators) that yield seconds to sleep, an Event to wait for or Slots to
    take; run() advances the world's clock to when the last one ends."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.now = world.now
        self._queue: list[tuple[float, int, Any, Any]] = []
        self._order = itertools.count()

    def start(self, process: Process) -> Event:
        done = Event()
        self._at(self.now, (process, done))
        return done

    def run(self) -> None:
        while self._queue:
            self.now, _, proc, value = heapq.heappop(self._queue)
            self._advance(proc, value)
        self.world.now = max(self.world.now, self.now)

    def release(self, slots: Slots) -> None:
        if slots.waiters:
            self._at(self.now, slots.waiters.popleft())
        else:
            slots.free += 1

    def call(self, api: str, resources: int = 0) -> Process:
        """One EC2 call; throttled ones are retried after a full-jitter back-off."""
        world = self.world
        attempt = 0
        while True:
            granted = self._tokens(api, resources)
            yield world.lat.run_instances if api == "RunInstances" else world.lat.api
            if granted:
                world.calls[api] += 1
                return
            world.throttled[api] += 1
            attempt += 1
            yield world.rng.random() * min(SDK_MAX_BACKOFF, 2.0 ** attempt)

    def _tokens(self, api: str, resources: int) -> bool:
        buckets = self.world.buckets
        request = buckets.setdefault(api, Bucket(*REQUEST_BUCKETS.get(api, NON_MUTATING),
                                                 tokens=REQUEST_BUCKETS.get(api, NON_MUTATING)[0]))
        if not request.take(self.now):
            return False
        if resources and api in RESOURCE_BUCKETS:
            capacity, refill = RESOURCE_BUCKETS[api]
            pool = buckets.setdefault(api + "/resources", Bucket(capacity, refill, capacity))
            return pool.take(self.now, resources)
        return True

    def _at(self, when: float, proc: Any, value: Any = None) -> None:
        heapq.heappush(self._queue, (when, next(self._order), proc, value))

    def _advance(self, proc: Any, value: Any) -> None:
        generator, done = proc
        try:
            request = generator.send(value)
        except StopIteration:
            done.fired = True
            for waiter in done.waiters:
                self._at(self.now, waiter)
            return
        if isinstance(request, (int, float)):
            self._at(self.now + request, proc)
        elif isinstance(request, Event):
            if request.fired:
                self._at(self.now, proc)
            else:
                request.waiters.append(proc)
        elif isinstance(request, Slots):
            if request.free > 0:
                request.free -= 1
                self._at(self.now, proc)
            else:
                request.waiters.append(proc)
            waiting = len(request.waiters)
            self.world.peaks[request.name] = max(self.world.peaks[request.name], waiting)
        else:
            raise TypeError(f"a process yielded {request!r}")


@dataclass
class Task:
    """One node of Terraform's graph walk."""

    name: str
    body: Callable[[Engine], Process]
    after: tuple[str, ...] = ()


def walk(engine: Engine, tasks: Sequence[Task], parallelism: int) -> None:
    """Terraform's walk: each task once its dependencies are done, at most ``parallelism``
    at once (a task holds its slot for the whole provider call and its provisioners)."""
    slots = Slots(parallelism, "terraform")
    done: dict[str, Event] = {}

    def run(task: Task) -> Process:
        for name in task.after:
            if name in done:
                yield done[name]
        yield slots
        yield from task.body(engine)
        engine.release(slots)

    for task in tasks:
        done[task.name] = engine.start(run(task))
    engine.run()


# --- EC2 machines and the swarm's state ----------------------------------------------------


@dataclass
class Machine:
    id: str
    name: str
    role: str
    private_ip: str
    public_ip: str | None
    image: str
    launched: float
    running_at: float
    ssh_at: float
    keys_at: float
    terminated_at: float | None = None

    def state(self, now: float) -> str:
        if self.terminated_at is not None:
            return "terminated" if now >= self.terminated_at else "shutting-down"
        return "running" if now >= self.running_at else "pending"

    @property
    def hostname(self) -> str:
        return "ip-" + self.private_ip.replace(".", "-")


@dataclass
class Member:
    id: str
    machine: Machine
    role: str
    ready_at: float
    availability: str = "active"
    drained_at: float = 0.0


class SwarmState:
    """The swarm as its managers know it."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.leader: str | None = None
        self.ids = itertools.count(1)

    def add(self, machine: Machine, role: str, now: float, lat: Latencies) -> None:
        node_id = f"{next(self.ids):025x}"
        self.members[node_id] = Member(node_id, machine, role, now + lat.ready_after_join)
        if self.leader is None and role == "manager":
            self.leader = node_id

    def member_on(self, host: str) -> Member | None:
        return next((m for m in self.members.values()
                     if host in (m.machine.public_ip, m.machine.private_ip)), None)

    def listing(self, now: float) -> str:
        """What NODE_QUERY prints: the nodes as Docker's API lists them."""
        nodes = []
        for m in self.members.values():
            gone = m.machine.state(now) != "running"
            node: dict[str, object] = {
                "ID": m.id, "Spec": {"Role": m.role, "Availability": m.availability},
                "Description": {"Hostname": m.machine.hostname,
                                "Engine": {"EngineVersion": "28.2.2"}},
                "Status": {"State": "down" if gone else ("ready" if now >= m.ready_at
                                                         else "unknown"),
                           "Addr": m.machine.private_ip}}
            if m.role == "manager":
                node["ManagerStatus"] = {"Leader": m.id == self.leader,
                                         "Reachability": "unreachable" if gone else "reachable"}
            nodes.append(node)
        return json.dumps(nodes)


# --- SSH to the nodes, as our ssh commands see them ------------------------------------------


class VirtualTime:
    """``time`` for the modules whose waits the model runs: sleeps advance the world."""

    def __init__(self, world: World) -> None:
        self.world = world

    def monotonic(self) -> float:
        return self.world.now

    def time(self) -> float:
        return self.world.now

    def sleep(self, seconds: float) -> None:
        self.world.advance(seconds)


class ModelThread(threading.Thread):
    """threading.Thread on the world's clocks: it starts at its starter's time; a join
    goes on from the later of the joiner's time and the thread's end."""

    world: World

    def start(self) -> None:
        self._began = self.world.now
        self._ended = self._began
        super().start()

    def run(self) -> None:
        self.world.now = self._began
        try:
            super().run()
        finally:
            self._ended = self.world.now
            self.world.thread_ends()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        self.world.now = max(self.world.now, self._ended)


def model_threading(world: World) -> types.SimpleNamespace:
    """The threading module as the pipeline's modules see it in the model."""
    ModelThread.world = world
    return types.SimpleNamespace(**{**vars(threading), "Thread": ModelThread})


class ModelSSH:
    """swarmforge.ssh.SSH's place: answers our commands as Docker on the node would, and
    charges a handshake once per node (ControlMaster), then a round trip per command."""

    connected: ClassVar[set[str]] = set()  # hosts with a shared connection (ControlMaster)
    world: ClassVar[World]

    def __init__(self, profile: SshProfile, attempts: int = 5, first_backoff: float = 0.5,
                 timeout: float = 300.0) -> None:
        self.profile = profile

    def run(self, host: str, command: str, *, timeout: float | None = None,
            what: str | None = None) -> Completed:
        world = self.world
        if host not in self.connected:
            world.advance(4 * world.lat.rtt + world.lat.ssh_crypto)
            self.connected.add(host)
        world.advance(world.lat.rtt + world.lat.docker_cli)
        code, out = docker_answer(world, host, command)
        return Completed(("ssh", host), code, out, "", 0.0)

    def check(self, host: str, command: str, what: str, *, timeout: float | None = None) -> str:
        result = self.run(host, command, timeout=timeout, what=what)
        if not result.ok:
            from swarmforge.errors import CommandError
            raise CommandError(f"{what} on {host}", result.returncode, result.stdout)
        return result.stdout

    def forget(self, host: str) -> None:
        self.connected.discard(host)


def docker_answer(world: World, host: str, command: str) -> tuple[int, str]:
    """(exit status, stdout) of one of the pipeline's commands on ``host``."""
    swarm, now = world.swarm, world.now
    me = swarm.member_on(host)
    if command in (MANAGER_CHECK, SWARM_STATE):
        active = me is not None
        state = {"LocalNodeState": "active" if active else "inactive",
                 "ControlAvailable": bool(me and me.role == "manager")}
        return 0, json.dumps(state) + ("\nquorum" if command == MANAGER_CHECK else "")
    if command == NODE_QUERY:
        world.advance(world.lat.per_node_listed * len(swarm.members))
        return 0, swarm.listing(now)
    if command.startswith("docker swarm join-token -q manager"):
        return 0, "SWMTKN-1-0model0-0manager0\nSWMTKN-1-0model0-0worker0\n"
    if command.startswith("docker swarm join-token --rotate"):
        return 0, ""
    if command == "true":
        return 0, ""
    if command.startswith("docker swarm leave"):
        return 0, ""  # the node goes Down; `docker node rm` takes its entry
    node = re.search(r"\b([0-9a-f]{25})\b", command)
    member = swarm.members.get(node.group(1)) if node else None
    if command.startswith("docker node update --availability drain") and member:
        member.availability = "drain"
        member.drained_at = now + world.lat.tasks_moved
        return 0, ""
    if command.startswith("docker node ps") and member:
        return 0, "task\n" if now < member.drained_at else ""
    if command.startswith("docker node demote") and member:
        if member.id == swarm.leader:
            world.advance(world.lat.leadership_transfer)
            swarm.leader = next(m.id for m in swarm.members.values()
                                if m.role == "manager" and m.id != member.id)
        member.role = "worker"
        return 0, ""
    if command.startswith("docker node rm"):
        if member:
            del swarm.members[member.id]
        return 0, ""
    raise RuntimeError(f"the model does not know this command; teach docker_answer: {command}")


# --- Terraform: terraform/aws as a graph walk ---------------------------------------------------


@dataclass
class Resource:
    address: str
    kind: str  # instance | step | network
    name: str = ""
    machine_id: str = ""  # an instance's id; a step's trigger (its instance's id)


class ModelTerraform:
    """swarmforge.terraform.Terraform's place for terraform/aws: the same calls, the
    state kept here, every run a refresh and (for apply) the changes, walked in
    parallel as Terraform would."""

    def __init__(self, world: World, settings: Settings) -> None:
        self.world = world
        self.settings = settings
        self.state: dict[str, Resource] = {}
        self.runs: Counter[str] = Counter()
        self.ips = itertools.count(4)

    @classmethod
    def initialised(cls, world: World, settings: Settings) -> ModelTerraform:
        """`terraform init` in a command's workspace: the state is the one in the bucket."""
        if world.terraform is None:
            world.terraform = cls(world, settings)
        world.advance(world.lat.tf_init)
        world.terraform.runs["init"] += 1
        return world.terraform

    def document(self) -> str:
        """The state as the bucket holds it: what swarmforge.state_file reads."""
        self.world.advance(self.world.lat.s3)
        outputs = {name: {"value": value} for name, value in self._outputs().items()}
        return json.dumps({"outputs": outputs, "resources": [r.address for r in self.state.values()]})

    # -- the adapter's interface --------------------------------------------------------

    def plan(self, variables: Mapping[str, str], secrets: Mapping[str, str],
             targets: Sequence[str] = (), replace: Sequence[str] = ()) -> Plan:
        self.runs["plan"] += 1
        with self.world.span("terraform: start, refresh, plan"):
            self._refresh(10)  # the adapter runs plan without -parallelism: Terraform's default
        return Plan(tuple(self._diff(variables, replace, targets)))

    def apply(self, variables: Mapping[str, str], secrets: Mapping[str, str], *,
              targets: Sequence[str] = (), replace: Sequence[str] = (), parallelism: int = 10,
              destroy: bool = False, refresh_only: bool = False, refresh: bool = True,
              on_start: Callable[[str], None] | None = None) -> None:
        self.runs["apply"] += 1
        with self.world.span("terraform: start, refresh, plan"):
            if refresh:
                self._refresh(parallelism)
            else:
                self._start()
            changes = self._diff(variables, replace, targets)
        machines = any(c.address.startswith("aws_instance.") for c in changes)
        with self.world.span("terraform: instances" if machines else "terraform: swarm steps"):
            self._execute(changes, variables, secrets, parallelism)
            self._write_state()

    def outputs(self) -> dict[str, Any]:
        self.world.advance(self.world.lat.tf_cli)
        self.runs["output"] += 1
        return self._outputs()

    def _outputs(self) -> dict[str, Any]:
        nodes: dict[str, list[dict[str, str]]] = {"manager": [], "worker": []}
        for resource in sorted(self._instances(), key=lambda r: _index(r.address)):
            m = self.world.machines[resource.machine_id]
            nodes[m.role].append({"name": m.name, "private_ip": m.private_ip,
                                  "ssh_host": m.public_ip or m.private_ip, "id": m.id})
        joined = sorted(r.name for r in self.state.values() if r.kind == "step")
        return {"managers": nodes["manager"], "workers": nodes["worker"], "joined": joined}

    def node_names(self) -> dict[str, str]:
        self.world.advance(self.world.lat.tf_cli)
        return {r.address: r.name for r in self._instances()}

    def move(self, source: str, destination: str) -> None:
        self.world.advance(self.world.lat.tf_cli + 2 * self.world.lat.s3)
        resource = self.state.pop(source)
        resource.address = destination
        self.state[destination] = resource

    # -- what a run does -------------------------------------------------------------------

    def _instances(self) -> list[Resource]:
        return [r for r in self.state.values() if r.kind == "instance"]

    def _start(self) -> None:
        """Start, and read the data sources (-refresh=false reads them still)."""
        world = self.world
        world.advance(world.lat.tf_start)
        engine = Engine(world)
        walk(engine, [Task(api, _calls(api), (DATA_SOURCES[i - 1],) if i else ())
                      for i, api in enumerate(DATA_SOURCES)], 10)
        world.advance(world.lat.tf_per_resource * (len(self.state) + 1))

    def _refresh(self, parallelism: int) -> None:
        """Start, read the data sources and every resource in the state."""
        world = self.world
        world.advance(world.lat.tf_start)
        engine = Engine(world)
        tasks = [Task(api, _calls(api), (DATA_SOURCES[i - 1],) if i else ())
                 for i, api in enumerate(DATA_SOURCES)]
        for resource in self.state.values():
            if resource.kind == "instance":
                tasks.append(Task(resource.address, _calls(*INSTANCE_READ)))
            elif resource.kind == "network":
                tasks.append(Task(resource.address, _calls("DescribeSecurityGroupRules")))
        walk(engine, tasks, parallelism)
        world.advance(world.lat.tf_per_resource * (len(self.state) + 1))

    def _write_state(self) -> None:
        lat = self.world.lat
        self.world.advance(lat.s3 * 2 + lat.tf_per_resource * len(self.state))

    def _desired(self, variables: Mapping[str, str]) -> tuple[dict[str, tuple[str, str]],
                                                              list[str], list[str]]:
        """({instance address: (name, role)}, the steps' node names, network addresses)."""
        cluster = variables["cluster_name"]
        slots = json.loads(variables["swarm_manager_slots"])
        instances = {f"aws_instance.swarm_manager[{i}]": (f"{cluster}-manager-{s}", "manager")
                     for i, s in enumerate(slots)}
        instances |= {f"aws_instance.swarm_worker[{i}]": (f"{cluster}-worker-{i}", "worker")
                      for i in range(int(variables["swarm_workers"]))}
        pinned = set(json.loads(variables["swarm_host_keys"]))
        names = [name for name, _ in instances.values()]
        if variables["swarm_init"] == "true":
            names = names[:1]
        network = ["aws_security_group.swarm", "aws_vpc_security_group_egress_rule.all",
                   *(f'aws_vpc_security_group_ingress_rule.swarm["{rule}"]' for rule in
                     ("cluster_management", "gossip_tcp", "gossip_udp", "overlay_vxlan",
                      "overlay_esp")),
                   *(f'aws_vpc_security_group_ingress_rule.ssh["{cidr}"]'
                     for cidr in json.loads(variables["allowed_ssh_cidrs"]))]
        return instances, [n for n in names if n in pinned], network

    def _diff(self, variables: Mapping[str, str], replace: Sequence[str],
              targets: Sequence[str]) -> list[PlannedChange]:
        instances, steps, network = self._desired(variables)
        changes = [PlannedChange(a, "create") for a in network if a not in self.state]
        remade = set()
        for address, (name, _) in instances.items():
            have = self.state.get(address)
            if have is None or address in replace:
                changes.append(PlannedChange(address, "create" if have is None else "replace"))
                remade.add(name)
            elif have.name != name:
                changes.append(PlannedChange(address, "update"))
        changes += [PlannedChange(r.address, "delete") for r in self._instances()
                    if r.address not in instances]
        ids = {name: self.state[a].machine_id for a, (name, _) in instances.items()
               if a in self.state}
        for name in steps:
            have = self.state.get(join_step_address(name))
            if have is None:
                changes.append(PlannedChange(join_step_address(name), "create"))
            elif name in remade or have.machine_id != ids.get(name):
                changes.append(PlannedChange(join_step_address(name), "replace"))
        changes += [PlannedChange(r.address, "delete") for r in self.state.values()
                    if r.kind == "step" and r.name not in steps]
        if targets:
            changes = [c for c in changes if c.address in targets]
        return changes

    def _execute(self, changes: Sequence[PlannedChange], variables: Mapping[str, str],
                 secrets: Mapping[str, str], parallelism: int) -> None:
        instances, _, _ = self._desired(variables)
        by_name = {name: (address, role) for address, (name, role) in instances.items()}
        network = [c.address for c in changes if c.address.startswith("aws_")
                   and "aws_instance" not in c.address]
        tasks = []
        for change in changes:
            address = change.address
            if address in network:
                after = () if address == "aws_security_group.swarm" else ("aws_security_group.swarm",)
                tasks.append(Task(address, self._network(address), after))
            elif address.startswith("aws_instance."):
                name, role = instances[address] if address in instances else (
                    self.state[address].name, "")
                tasks.append(Task(address, self._instance(change, name, role),
                                  ("aws_security_group.swarm",)))
            else:
                name = address.split('"')[1]
                instance, role = by_name.get(name, ("", ""))
                tasks.append(Task(address, self._step(change, name, instance, role, variables,
                                                      secrets), (instance, *network)))
        walk(Engine(self.world), tasks, parallelism)

    def _network(self, address: str) -> Callable[[Engine], Process]:
        def body(engine: Engine) -> Process:
            api = ("CreateSecurityGroup" if address == "aws_security_group.swarm"
                   else "AuthorizeSecurityGroupIngress")
            yield from engine.call(api)
            yield from engine.call("DescribeSecurityGroupRules")
            self.state[address] = Resource(address, "network")
        return body

    def _instance(self, change: PlannedChange, name: str, role: str) -> Callable[[Engine], Process]:
        def body(engine: Engine) -> Process:
            if change.action in ("replace", "delete"):
                yield from self._terminate(engine, self.state.pop(change.address))
            if change.action == "update":
                yield from engine.call("CreateTags")
                yield from engine.call("DeleteTags")
                self.state[change.address].name = name
            if change.action in ("create", "replace"):
                machine = yield from self._launch(engine, name, role)
                self.state[change.address] = Resource(change.address, "instance", name, machine.id)
            if change.action != "delete":
                for api in INSTANCE_READ:
                    yield from engine.call(api)
        return body

    def _launch(self, engine: Engine, name: str, role: str) -> Generator[Any, Any, Machine]:
        world = self.world
        yield from engine.call("RunInstances", resources=1)
        n = next(self.ips)
        lat = world.lat
        instance_id = f"i-{zlib.crc32(f'{name}/{n}'.encode()):08x}{n:09x}"
        running = engine.now + lat.pending_to_running.at(world.quantile(instance_id, "run"))
        ssh = running + lat.running_to_ssh.at(world.quantile(instance_id, "boot"))
        public = role == "manager" or self.settings.worker_public_ip
        machine = Machine(instance_id, name, role, f"10.0.{n // 250}.{n % 250}",
                          f"3.{n // 62500}.{n // 250 % 250}.{n % 250}" if public else None,
                          world.image, engine.now, running, ssh, ssh + lat.keys_after_ssh)
        world.machines[instance_id] = machine
        yield from _until(engine, lambda: engine.now >= machine.running_at)
        return machine

    def _terminate(self, engine: Engine, resource: Resource) -> Process:
        machine = self.world.machines[resource.machine_id]
        yield from engine.call("TerminateInstances", resources=1)
        machine.terminated_at = engine.now + self.world.lat.terminate.at(
            self.world.quantile(machine.id, "terminate"))
        yield from _until(engine, lambda: engine.now >= (machine.terminated_at or 0.0))

    def _step(self, change: PlannedChange, name: str, instance: str, role: str,
              variables: Mapping[str, str], secrets: Mapping[str, str]) -> Callable[[Engine], Process]:
        """A swarm step: three provisioners, each its own SSH connection (through the
        bastion for a private worker), the last one joining (or, in phase 1, init)."""
        lat = self.world.lat
        world = self.world

        def body(engine: Engine) -> Process:
            if change.action in ("delete", "replace"):
                self.state.pop(change.address, None)
            if change.action == "delete":
                return
            machine = world.machines[self.state[instance].machine_id]
            if engine.now < machine.ssh_at:  # the communicator retries until sshd answers
                yield machine.ssh_at - engine.now
            private = machine.public_ip is None
            for _ in range(3):  # remote-exec (mkdir), file, remote-exec (join)
                if private:
                    yield bastion
                    yield 4 * lat.rtt + lat.ssh_crypto
                    engine.release(bastion)
                yield 4 * lat.rtt + lat.ssh_crypto + 3 * lat.rtt  # handshake, upload, run
            if variables["swarm_init"] == "true":
                yield lat.swarm_init
            else:
                yield ca
                yield lat.ca_sign
                engine.release(ca)
                if role == "manager":
                    yield raft
                    yield lat.raft_admit
                    engine.release(raft)
                spread = lat.manager_join if role == "manager" else lat.worker_join
                yield spread.at(world.quantile(machine.id, "join"))
            assert secrets or variables["swarm_init"] == "true", "a join needs the tokens"
            world.swarm.add(machine, role, engine.now, lat)
            self.state[change.address] = Resource(change.address, "step", name, machine.id)

        bastion = self.bastion
        ca = self.ca
        raft = self.raft
        return body

    @property
    def bastion(self) -> Slots:
        return self._shared("bastion", SSHD_MAX_STARTUPS, "bastion sshd startups")

    @property
    def ca(self) -> Slots:
        return self._shared("ca", 1, "certificates waiting for the CA")

    @property
    def raft(self) -> Slots:
        return self._shared("raft", 1, "managers waiting for raft")

    def _shared(self, key: str, size: int, name: str) -> Slots:
        slots: dict[str, Slots] = self.__dict__.setdefault("_slots", {})
        return slots.setdefault(key, Slots(size, name))


def _calls(*apis: str) -> Callable[[Engine], Process]:
    def body(engine: Engine) -> Process:
        for api in apis:
            yield from engine.call(api)
    return body


def _until(engine: Engine, ready: Callable[[], bool]) -> Process:
    """The provider's waiter: DescribeInstances after Delay, then at growing intervals."""
    yield WAITER_DELAY
    wait = 0.1
    while True:
        yield from engine.call("DescribeInstances")
        if ready():
            return
        wait = min(max(wait * 2, WAITER_MIN), WAITER_MAX)
        yield wait


def _index(address: str) -> tuple[str, int]:
    return address.split("[")[0], int(address.rsplit("[", 1)[1].rstrip("]"))


# --- the aws target, over simulated EC2 -------------------------------------------------------


class ModelEc2:
    """The few EC2 calls the aws target's own functions make, answered from the world."""

    def __init__(self, world: World) -> None:
        self.world = world

    def get_paginator(self, name: str) -> ModelEc2:
        assert name == "describe_instances", name
        return self

    def paginate(self, Filters: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        world = self.world
        for f in Filters:
            world.peaks["filter values"] = max(world.peaks["filter values"], len(f["Values"]))
            if len(f["Values"]) > FILTER_VALUES_MAX:
                world.note(FILTER_FINDING)
        chunks = max(math.ceil(len(f["Values"]) / FILTER_VALUES_MAX) for f in Filters)
        for _ in range(chunks):
            world.serial_call("DescribeInstances")
        wanted = {f["Name"]: set(f["Values"]) for f in Filters}
        found = [self._instance(m) for m in world.machines.values()
                 if all(self._matches(m, k, v) for k, v in wanted.items())]
        yield {"Reservations": [{"Instances": found}]}

    def _matches(self, m: Machine, key: str, values: set[str]) -> bool:
        value = {"tag:Cluster": "model", "tag:Name": m.name, "tag:Role": m.role,
                 "instance-state-name": m.state(self.world.now)}[key]
        return value in values

    def _instance(self, m: Machine) -> dict[str, Any]:
        found: dict[str, Any] = {
            "InstanceId": m.id, "ImageId": m.image, "State": {"Name": m.state(self.world.now)},
            "PrivateIpAddress": m.private_ip, "InstanceType": "t3.small",
            "Tags": [{"Key": "Name", "Value": m.name}, {"Key": "Cluster", "Value": "model"},
                     {"Key": "Role", "Value": m.role}, {"Key": "Slot", "Value": m.name.rsplit("-", 1)[1]}]}
        if m.public_ip:
            found["PublicIpAddress"] = m.public_ip
        return found


class MemoryJournal:
    """The journal's text, in S3 in the real thing: each read or write one S3 request."""

    where = "s3://model/journal"

    def __init__(self, world: World) -> None:
        self.world = world
        self.text: str | None = None

    def read(self) -> str | None:
        self.world.advance(self.world.lat.s3)
        return self.text

    def write(self, text: str) -> None:
        self.world.advance(self.world.lat.s3)
        self.text = text

    def remove(self) -> None:
        self.world.advance(self.world.lat.s3)
        self.text = None


class ModelOperations:
    """The S3 lease (take: read, conditional write; release: delete) and the journal."""

    where = "s3://model/lease"

    def __init__(self, world: World) -> None:
        self.world = world
        self.storage = MemoryJournal(world)

    @contextlib.contextmanager
    def exclusive(self, what: str, say: Callable[[str], None] = lambda line: None) -> Iterator[None]:
        self.world.advance(2 * self.world.lat.s3)
        yield
        self.world.advance(self.world.lat.s3)

    def journal(self) -> Journal:
        return Journal(self.storage)

    def holder(self) -> str | None:
        return None

    def force_unlock(self) -> str | None:
        return None


class ModelTarget:
    """The aws target's seam, its checks costed as the API calls they make, its node
    look-ups and host-key pinning the real functions over ModelEc2."""

    name = "aws"
    config_dir = REPO / "terraform" / "aws"
    resource_type = "aws_instance"
    mirrored_providers: tuple[str, ...] = ()
    default_parallelism = AwsTarget.default_parallelism
    login_user = "ubuntu"

    def ssh_host_ahead(self, role: str, slot: int) -> str | None:
        return None  # as the aws target: EC2 gives the address

    def __init__(self, world: World, settings: Settings) -> None:
        self.world = world
        self.settings = settings
        self.ec2 = ModelEc2(world)
        self.ssh_dir = settings.cluster_dir / "ssh"
        self.pins = HostKeyPins(self.ssh_dir)
        self.operations = ModelOperations(world)
        self.profile = SshProfile(name=settings.cluster, user="ubuntu", identity=Path("/dev/null"),
                                  known_hosts=self.ssh_dir / "known_hosts",
                                  config=self.ssh_dir / "config")
        self._prepared = False

    def prepare(self, *, destroying: bool = False) -> SshProfile:
        # STS, the region, the state bucket (exists, versioning, encryption, public
        # access), the key pair, the bastion: one call each, once per run.
        for api in ("GetCallerIdentity", "DescribeRegions", "HeadBucket", "GetBucketVersioning",
                    "GetBucketEncryption", "GetPublicAccessBlock", "DescribeKeyPairs"):
            self.world.serial_call(api)
        manager_address(self.ec2, self.settings.cluster)
        return self.profile

    def ssh_profile(self) -> SshProfile:
        return self.profile

    def variables(self, *, destroying: bool = False) -> dict[str, str]:
        manager_address(self.ec2, self.settings.cluster)  # looked up again at every run
        s = self.settings
        return {"cluster_name": s.cluster, "allowed_ssh_cidrs": json.dumps(list(s.allowed_ssh_cidrs)),
                "worker_public_ip": str(s.worker_public_ip).lower()}

    def check_capacity(self, progress: Progress) -> None:
        with progress.step("checking the AMI's root snapshot and the account's vCPU quotas"):
            for api in ("DescribeImages", "DescribeSnapshots", "GetServiceQuota",
                        "GetServiceQuota", "DescribeInstances", "DescribeInstanceTypes"):
                self.world.serial_call(api)

    def pin_host_keys(self, refs: Sequence[NodeRef], say: Callable[[str], None]) -> dict[str, str]:
        with self.world.span("host keys from the consoles"):
            return self.pins.pin(refs, self._console, say)

    def _console(self, instance_id: str) -> str:
        self.world.serial_call("GetConsoleOutput")
        machine = self.world.machines[instance_id]
        if self.world.now < machine.keys_at:
            return "[    4.2] cloud-init: booting\n"
        blob = "AAAAC3NzaC1lZDI1NTE5AAAAI" + f"{zlib.crc32(instance_id.encode()):08x}" * 4
        return f"{KEYS_BEGIN}\nssh-ed25519 {blob}\n{KEYS_END}\n"

    def node_facts(self, refs: Sequence[NodeRef]) -> dict[str, NodeFacts]:
        return aws_node_facts(self.ec2, self.settings, refs)

    def exists(self) -> bool:
        return True

    def describe_image(self) -> str:
        return f"{self.world.image} (from the model)"

    def desired_image(self) -> str:
        return self.world.image

    def operation_store(self) -> ModelOperations:
        return self.operations

    def unlock_key_store(self) -> ModelUnlockKeys:
        return ModelUnlockKeys(self.world)

    def teardown(self) -> None:
        pass


class ModelUnlockKeys:
    """The SSM parameter of the unlock key, holding none: the modelled swarm is not autolocked."""

    where = "ssm:/swarmforge/model/unlock-key"

    def __init__(self, world: World) -> None:
        self.world = world

    def get(self) -> UnlockKeys | None:
        self.world.advance(self.world.lat.s3)  # one GetParameter, as long as an S3 request
        return None

    def put(self, keys: UnlockKeys) -> None:
        raise AssertionError("the modelled swarm is never autolocked")

    def delete(self) -> None:
        pass


# --- the pipeline's operations, timed ------------------------------------------------------


class Timeline(Progress):
    """Progress on the virtual clock: each step's title and seconds, nothing printed."""

    def __init__(self, world: World) -> None:
        super().__init__(stream=io.StringIO())
        self.world = world
        self.steps: list[tuple[str, float]] = []  # the outermost steps only
        self.depth = 0

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = self.world.now
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0:
            self.steps.append((title, self.world.now - started))


@dataclass
class Run:
    """One simulated operation: how long, where the time went, what it ran into."""

    seconds: float
    steps: list[tuple[str, float]]
    terraform: Counter[str]
    calls: Counter[str]
    throttled: Counter[str]
    notes: set[str]
    peaks: Counter[str]
    spans: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


FILTER_FINDING = (
    "the aws target's node_facts() (instances.py) names every node in one tag:Name filter "
    f"of DescribeInstances; EC2 refuses more than {FILTER_VALUES_MAX} values "
    "(FilterLimitExceeded), so every command that reads the nodes fails past 200 nodes. "
    "Proposed fix: filter by tag:Cluster alone (one value) and pick the names from the "
    "answer, or ask in chunks of 200. The model answers as if chunked")
REPIN_FINDING = ("a replaced worker never rejoins on aws: Cluster.apply_terraform runs the "
                 "second apply (the swarm steps that waited for a host key) only for node "
                 "names it had no pin for, and a worker replaced in place keeps its name; its "
                 "step, dropped while its pin was void, is not made again, and the settle "
                 "times out. Proposed fix: `before = set(self._pins) - self._unpinned`. The "
                 "model's rolls carry on with that fix")


def forget_replaced_pins(original: Callable[..., None]) -> Callable[..., None]:
    """Cluster.apply_terraform with the proposed fix: the replaced nodes' old pins are
    forgotten first (they are void: ``_unpinned``), so their new ones count as new."""
    def apply_terraform(cluster: Cluster, variables: Callable[[], dict[str, str]],
                        secrets: dict[str, str], *, replace: Sequence[str] = (),
                        refresh: bool = True,
                        on_start: Callable[[str], None] | None = None) -> None:
        refs = cluster._refs or []
        void = {ref.name for address in replace if (ref := ref_for(address, refs))}
        cluster._pins = {n: k for n, k in cluster._pins.items() if n not in void}
        original(cluster, variables, secrets, replace=replace, refresh=refresh,
                 on_start=on_start)
    return apply_terraform


class ParsedPins(dict[str, dict[str, Any]]):
    """A parsed host_keys.json shared between loads: each entry is copied when taken, as
    a fresh parse would hand out a fresh one (pin() changes the entries it takes)."""

    def get(self, key: str, default: Any = None) -> Any:
        entry = super().get(key)
        return dict(entry) if entry is not None else default

    def __getitem__(self, key: str) -> dict[str, Any]:
        return dict(super().__getitem__(key))

    def values(self) -> Any:
        return [dict(entry) for entry in super().values()]

    def items(self) -> Any:
        return [(key, dict(entry)) for key, entry in super().items()]


def charged_load(world: World) -> Callable[[HostKeyPins], dict[str, dict[str, Any]]]:
    """HostKeyPins.load, its parse charged to the clock at HOST_KEYS_PARSE per entry (the
    CPU it costs the real run), the parse itself made once per version of the file (the
    model's own run time: a 7+500 roll reads 500 entries 500 times per node look-up)."""
    parsed: dict[tuple[Path, int, int], ParsedPins] = {}

    def load(pins: HostKeyPins) -> dict[str, dict[str, Any]]:
        try:
            stat = pins.path.stat()
        except FileNotFoundError:
            return {}
        key = (pins.path, stat.st_mtime_ns, stat.st_size)
        if key not in parsed:
            parsed.clear()
            parsed[key] = ParsedPins(json.loads(pins.path.read_text()))
        with world.span("host_keys.json parsed (CPU)"):
            world.advance(HOST_KEYS_PARSE * len(parsed[key]))
        return parsed[key]
    return load


@contextlib.contextmanager
def modelled(world: World, repin_fix: bool = False) -> Iterator[None]:
    """The seams where the pipeline leaves this process: Terraform, ssh, the clock."""
    ModelSSH.world = world
    ModelSSH.connected = set()
    clock = VirtualTime(world)
    patches: list[Any] = [
        mock.patch.object(swarmforge.cluster, "initialised_terraform",
                          lambda settings, *_: ModelTerraform.initialised(world, settings)),
        mock.patch.object(swarmforge.state_file, "_s3_state",
                          lambda settings: world.terraform.document() if world.terraform else ""),
        mock.patch.object(swarmforge.cluster, "SSH", ModelSSH),
        mock.patch.object(swarmforge.swarm, "SSH", ModelSSH),
        mock.patch.object(swarmforge.replacement, "SSH", ModelSSH),
        mock.patch.object(swarmforge.swarm, "time", clock),
        mock.patch.object(swarmforge.replacement, "time", clock),
        mock.patch.object(swarmforge.targets.aws.host_keys, "time", clock),
        mock.patch.object(HostKeyPins, "load", charged_load(world)),
        *(mock.patch.object(module, "threading", model_threading(world))
          for module in (swarmforge.cluster, swarmforge.replacement, swarmforge.swarm)
          if hasattr(module, "threading")),
    ]
    if repin_fix:
        patches.append(mock.patch.object(Cluster, "apply_terraform",
                                         forget_replaced_pins(Cluster.apply_terraform)))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield


def settings_for(managers: int, workers: int, parallelism: int, state_dir: str,
                 worker_public_ip: bool = True) -> Settings:
    return Settings(cluster="model", target="aws", managers=managers, workers=workers,
                    parallelism=parallelism, state_dir=state_dir, key_name="model",
                    allowed_ssh_cidrs=("203.0.113.0/24",), worker_public_ip=worker_public_ip,
                    region="eu-west-1", health_timeout=3600.0, state_bucket="model-state")


def form(managers: int, workers: int, parallelism: int, *, lat: Latencies | None = None,
         worker_public_ip: bool = True) -> tuple[Run, Cluster, World]:
    """`invoke apply` of a new cluster, as Cluster.apply runs it."""
    world = World(lat or Latencies())
    state_dir = tempfile.mkdtemp(prefix="aws-model-")
    atexit.register(shutil.rmtree, state_dir, ignore_errors=True)  # a roll reads it after
    settings = settings_for(managers, workers, parallelism, state_dir, worker_public_ip)
    progress = Timeline(world)
    cluster = Cluster(settings, progress, ModelTarget(world, settings))  # type: ignore[arg-type]
    with modelled(world):
        world.advance(world.lat.cli_start)
        report = cluster.apply()
    assert report is not None and report.health.healthy, "the modelled formation is unhealthy"
    return _run(world, progress, cluster), cluster, world


def worker_rejoins() -> bool:
    """Whether a roll of a 3+2 cluster, as the pipeline is, gets its first worker back."""
    try:
        roll_sample(3, 2, 10, batches=1, repin_fix=False)
    except StepFailed as failed:
        if "workers (want" in str(failed):
            return False
        raise
    return True


def roll_sample(managers: int, workers: int, parallelism: int, batches: int = 2,
                lat: Latencies | None = None, repin_fix: bool = False,
                max_unavailable: int = 1) -> Run:
    """`invoke roll --max-unavailable N` onto a new image, as roll() runs it, of ``batches``
    batches of workers and every manager; the other workers are the same steps on the
    same cluster, so their time is the sample's mean per worker (Run.extra says so)."""
    _, cluster, world = form(managers, workers, parallelism, lat=lat)
    stale = min(batches * max_unavailable, workers)
    new_image = "ami-0000000000000000b"
    old = [m for m in world.machines.values() if m.terminated_at is None]
    for m in old:
        if m.role == "worker" and int(m.name.rsplit("-", 1)[1]) >= stale:
            m.image = new_image  # up to date already: not in the sampled roll
    world.image = new_image
    for counts in (world.calls, world.throttled, world.spans):
        counts.clear()  # the roll's own
    world.notes.clear()
    assert world.terraform is not None, "a formed cluster has its Terraform state"
    world.terraform.runs.clear()
    progress = Timeline(world)
    cluster = Cluster(cluster.settings, progress, cluster.target)  # a new `invoke roll`
    start = world.now
    with modelled(world, repin_fix):
        world.advance(world.lat.cli_start)
        # No backup before the first manager: one per roll (a follower's Docker stopped
        # for a copy, ~10-20 s), the same at any size; the model times what grows.
        outcome = roll(cluster, everything=False, act=True, max_unavailable=max_unavailable,
                       backup=False)
    assert outcome.acted and not outcome.left, outcome
    run = _run(world, progress, cluster, start)
    steps = [(t, s) for t, s in progress.steps if t.startswith("[")]
    per = _per_replacement(steps)
    worker_mean = sum(per["worker"]) / stale if per["worker"] else 0.0
    run.extra = {"per_worker": worker_mean,
                 "per_manager": sum(per["manager"]) / max(1, len(per["manager"])),
                 "sampled_workers": stale,
                 "total": run.seconds + (workers - stale) * worker_mean}
    return run


def _per_replacement(steps: Sequence[tuple[str, float]]) -> dict[str, list[float]]:
    """Each replacement's seconds, by role, from its numbered steps ([1/4] ...)."""
    per: dict[str, list[float]] = {"worker": [], "manager": []}
    current: list[float] = []
    role = "worker"
    for title, seconds in steps:
        number, total = map(int, title[1:].split("]")[0].split("/"))
        if number == 1:
            role = "manager" if total > 4 else "worker"
            current = []
        current.append(seconds)
        if number == total:
            per[role].append(sum(current))
    return per


def _run(world: World, progress: Timeline, cluster: Cluster, start: float = 0.0) -> Run:
    runs = world.terraform.runs if world.terraform else Counter()
    return Run(world.now - start, list(progress.steps), Counter(runs), Counter(world.calls),
               Counter(world.throttled), set(world.notes), Counter(world.peaks),
               dict(world.spans))


# --- what others take -------------------------------------------------------------------------


def kops_per_node(lat: Latencies) -> float:
    """One node of `kops rolling-update cluster` with its defaults (no surge): drain, the
    post-drain delay, terminate; the ASG's new node boots and registers while kops waits
    the node interval, then validates every 30 s until it passes twice, 10 s apart."""
    ready = (lat.kops_asg_reacts + lat.run_instances + lat.pending_to_running.median
             + lat.running_to_ssh.median + lat.kops_nodeup)
    tick = KOPS["validate_tick"]
    first_pass = KOPS["node_interval"] + max(0.0, math.ceil(
        (ready - KOPS["node_interval"]) / tick)) * tick
    validated = first_pass + (KOPS["validate_count"] - 1) * KOPS["validate_success"]
    return lat.tasks_moved + KOPS["post_drain_delay"] + lat.api + validated


# --- the table ------------------------------------------------------------------------------------

SIZES = ((3, 2), (3, 25), (5, 100), (7, 500))
PHASES = (("prepare", ("preparing", "checking")), ("phase 1", ("phase 1", "host keys")),
          ("phase 2", ("phase 2",)), ("health", ("waiting",)), ("rotate", ("rotating",)))


def phase_seconds(run: Run) -> dict[str, float]:
    seconds = dict.fromkeys([name for name, _ in PHASES], 0.0)
    for title, s in run.steps:
        for name, starts in PHASES:
            if title.startswith(starts):
                seconds[name] += s
                break
    return seconds


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def where(run: Run) -> str:
    """The run's seconds by what they went to, most first."""
    spans = sorted(run.spans.items(), key=lambda item: -item[1])
    return "; ".join(f"{what} {minutes(seconds)}" for what, seconds in spans if seconds >= 1)


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w)
                               in enumerate(zip(r, widths, strict=True))) for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--parallelism", type=int, default=AwsTarget.default_parallelism,
                        help="swarmforge.parallelism (Terraform's -parallelism); default the aws "
                             "target's")
    parser.add_argument("--sweep", default="10,25,50,100,200",
                        help="-parallelism values for the 7+500 formation sweep")
    args = parser.parse_args(argv)
    lat = Latencies()
    p = args.parallelism
    streak = inspect.signature(Swarm.wait_healthy).parameters["streak"].default
    print(f"AWS model: the pipeline's own apply and roll over simulated EC2, Terraform "
          f"(-parallelism {p}) and SSH. From the code: health streak {streak}, console "
          f"poll {POLL:.0f} s, recheck {RECHECK} s; times are virtual (nothing is slept).")
    print()
    formation(p)
    rejoins = worker_rejoins()
    rolls = rolling(p, lat, repin_fix=not rejoins)
    sweep(7, 500, [int(v) for v in args.sweep.split(",") if v])
    findings(p, rejoins, rolls)
    big, small = FORMS[SIZES[-1]], FORMS[SIZES[0]]
    low, high = DOCKER_FOR_AWS
    per_worker = rolls[SIZES[-1]].extra["per_worker"]
    kops = kops_per_node(lat)
    print(f"summary: formation 3+2 {minutes(small.seconds)} ({small.seconds / low:.2f}x the low "
          f"end of Docker for AWS's {low / 60:.0f}-{high / 60:.0f} min), 7+500 "
          f"{minutes(big.seconds)} ({big.seconds / high:.2f}x its high end); roll per worker "
          f"3+2 {minutes(rolls[SIZES[0]].extra['per_worker'])}, 7+500 {minutes(per_worker)} "
          f"= {per_worker / kops:.2f}x kops' {minutes(kops)} per node")
    return 0


FORMS: dict[tuple[int, int], Run] = {}


def formation(p: int) -> None:
    rows = [["cluster", "formation", "prepare", "phase 1", "phase 2", "health", "TF runs",
             "EC2 calls", "throttled", "vs D4AWS 10-15 min"]]
    for m, w in SIZES:
        run = FORMS[(m, w)] = form(m, w, p)[0]
        ph = phase_seconds(run)
        low, high = DOCKER_FOR_AWS
        rows.append([f"{m}+{w}", minutes(run.seconds), minutes(ph["prepare"]),
                     minutes(ph["phase 1"]), minutes(ph["phase 2"]),
                     minutes(ph["health"] + ph["rotate"]),
                     f"{run.terraform['apply']}a+{run.terraform['plan']}p",
                     str(sum(run.calls.values())), str(sum(run.throttled.values())),
                     f"{run.seconds / high:.2f}-{run.seconds / low:.2f}x"])
    print("Formation, `invoke apply` of a new cluster (phase 1: every instance, host keys, "
          "swarm init; phase 2: the joins):")
    print(table(rows))
    print("  where 7+500 goes: " + where(FORMS[SIZES[-1]]))
    print()


def rolling(p: int, lat: Latencies, repin_fix: bool) -> dict[tuple[int, int], Run]:
    kops = kops_per_node(lat)
    rows = [["cluster", "roll, all nodes", "per worker", "per manager", "vs kops/node",
             "TF runs sampled", "throttled"]]
    rolls = {}
    for m, w in SIZES:
        run = rolls[(m, w)] = roll_sample(m, w, p, lat=lat, repin_fix=repin_fix)
        rows.append(_roll_row(f"{m}+{w}", run, kops))
    batch = 10
    wide = roll_sample(7, 500, p, lat=lat, repin_fix=repin_fix, max_unavailable=batch)
    rows.append(_roll_row(f"7+500 -u {batch}", wide, kops))
    print(f"Roll onto a new image, `invoke roll` (--max-unavailable 1, and {batch}); two "
          "batches of workers and every manager simulated, the other workers at the "
          f"sampled mean; kops per node with its defaults: {minutes(kops)}:")
    print(table(rows))
    print("  where the 7+500 sample goes: " + where(rolls[SIZES[-1]]))
    print()
    return rolls


def _roll_row(label: str, run: Run, kops: float) -> list[str]:
    return [label, minutes(run.extra["total"]), minutes(run.extra["per_worker"]),
            minutes(run.extra["per_manager"]), f"{run.extra['per_worker'] / kops:.2f}x",
            f"{run.terraform['apply']}a+{run.terraform['plan']}p",
            str(sum(run.throttled.values()))]


def sweep(managers: int, workers: int, values: Sequence[int]) -> None:
    rows = [["-parallelism", "formation", "phase 1", "phase 2", "throttled",
             "most throttled API"]]
    for value in values:
        run = form(managers, workers, value)[0]
        ph = phase_seconds(run)
        worst = run.throttled.most_common(1)
        rows.append([str(value), minutes(run.seconds), minutes(ph["phase 1"]),
                     minutes(ph["phase 2"]), str(sum(run.throttled.values())),
                     f"{worst[0][0]} x{worst[0][1]}" if worst else "-"])
    print(f"Where the limits bite: the {managers}+{workers} formation against -parallelism:")
    print(table(rows))
    top = max(values)
    private = form(managers, workers, top, worker_public_ip=False)[0]
    print(f"  private workers (SSH through a manager), -parallelism {top}: "
          f"{minutes(private.seconds)}; up to {private.peaks['bastion sshd startups']} "
          f"connections waiting on the manager's sshd (MaxStartups {SSHD_MAX_STARTUPS})")
    print()


# One parse of 507 entries costs ~2 ms; once per node, ~0.8 s a look-up.
QUADRATIC_PARSE = 0.05


def findings(p: int, rejoins: bool, rolls: Mapping[tuple[int, int], Run]) -> None:
    big = FORMS[SIZES[-1]]
    notes = set().union(*(r.notes for r in [*FORMS.values(), *rolls.values()]))
    if not rejoins:
        notes.add(REPIN_FINDING)
    parse = rolls[SIZES[-1]].spans.get("host_keys.json parsed (CPU)", 0.0)
    lookups = rolls[SIZES[-1]].terraform["output"]
    if parse / max(1, lookups) > QUADRATIC_PARSE:
        notes.add(f"HostKeyPins.pin parses host_keys.json once per node: at 7+500 "
                  f"{parse / max(1, lookups):.1f} s of CPU per node look-up ({lookups} in the "
                  "sampled roll); one load() per pin() makes it 1/500 of that")
    print(f"limits at 7+500, -parallelism {p}: the CA queued at most "
          f"{big.peaks['certificates waiting for the CA']} certificates, raft at most "
          f"{big.peaks['managers waiting for raft']} managers; Terraform held "
          f"{p} slots with up to {big.peaks['terraform']} resources waiting")
    for line in sorted(notes):
        print(f"finding: {line}")


if __name__ == "__main__":
    sys.exit(main())
