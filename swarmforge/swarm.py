"""The swarm seen through its managers over SSH: nodes, health, join tokens."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from swarmforge.beside import Beside
from swarmforge.errors import CommandError, SwarmError, UnhealthyError
from swarmforge.ssh import SSH, SSH_UNREACHABLE

# Every node, with its state, role and address, in one call to the manager's Docker API
# (curl, as swarm-node.sh joins): one read at one moment, and one small process where the
# docker CLI took three. It fails as `docker node ls` would: exit 1, the daemon's own words
# on stderr (in_election reads them); curl's exit code and words when Docker is not there.
NODE_QUERY = (
    "socket=${DOCKER_HOST:-unix:///var/run/docker.sock}; "
    "answer=$(curl -sS -w '\\n%{http_code}' --unix-socket \"${socket#unix://}\" "
    "http://docker/nodes) || exit; "
    "case $answer in "
    "*200) printf '%s' \"${answer%200}\";; "
    "*) printf '%s\\n' \"${answer%???}\" | sed -e '/^$/d' -e 's/^{\"message\":\"\\(.*\\)\"}$/"
    "Error response from daemon: \\1/' -e 's/\\\\\"/\"/g' >&2; exit 1;; "
    "esac"
)
SWARM_STATE = "docker info --format '{{json .Swarm}}'"
# One round trip: the node's swarm state, then whether it can list the nodes (it has quorum).
MANAGER_CHECK = (f"{SWARM_STATE} && "
                 "if docker node ls -q >/dev/null 2>&1; then echo quorum; else echo no-quorum; fi")
RECHECK = 0.25  # seconds before looking again at what is not there yet (tasks, health)
# A node Docker calls Down (its heartbeats stopped ~10 s before) or a manager raft calls
# unreachable, seen so this long in a row, will not come back by waiting: a wait stops.
# Longer than a reboot takes (an EC2 instance is back within about a minute), so that a
# node restarted by maintenance is waited for, not named dead. The default of the setting
# swarmforge.dead_after (tests that kill a node on purpose set it lower).
DEAD_AFTER = 60.0
# What a manager answers while the managers elect a leader: "not yet", not "cannot happen".
# (A refusal that would cost quorum reads otherwise, and is never retried.)
RAFT_IN_FLUX = (
    "node lost leader status",  # swarmkit's ErrLostLeadership
    "node is stopped",  # ErrStopped: the raft node answering is restarting
    "no elected cluster leader",  # ErrNoClusterLeader
    "does not have a leader",  # the daemon's own words for the same
    "context deadline exceeded",  # a proposal that was never committed
)
RAFT_SETTLE = 60.0  # seconds a manager command waits for an election to end
# How long another manager is given to confirm a healthy look; one that does not answer
# within it is passed over (the look is then the first manager's, a moment later).
CONFIRM_TIMEOUT = 15.0


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    role: str  # manager | worker
    status: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    manager_status: str | None  # leader | reachable | unreachable | None for workers
    address: str
    engine_version: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Health:
    nodes: tuple[Node, ...]
    problems: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def managers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "manager"]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]


class Unlocker(Protocol):
    """Unlocks a manager whose Docker restarted locked (swarm autolock)."""

    @property
    def armed(self) -> bool:
        """Whether autolock is known to be on (a key is stored): worth looking for locks."""

    def unlock(self, host: str) -> None:
        """Unlock the manager at SSH address ``host``; raises when it cannot."""


class DeadNodeError(UnhealthyError):
    """A wait for health that cannot end well: ``nodes`` are dead and nothing replaces them."""

    def __init__(self, nodes: Sequence[Node], advice: str = "") -> None:
        self.nodes = tuple(nodes)
        super().__init__(", ".join(describe_dead(n) for n in self.nodes)
                         + ": waiting cannot make the swarm healthy" + (f". {advice}" if advice else ""))


def describe_dead(node: Node) -> str:
    """``manager x-manager-1 is unreachable``: what a dead node looks like to the swarm."""
    state = node.manager_status if node.status == "ready" else node.status
    return f"{node.role} {shown_name(node)} is {state}"


def dead_nodes(nodes: Sequence[Node]) -> list[Node]:
    """Nodes that are not coming back by themselves: Down, or a manager raft cannot reach.

    A node that is joining is not listed yet, or is listed in state unknown with no
    hostname until it first reports, so it is never here.
    """
    return [n for n in nodes if n.status == "down"
            or (n.role == "manager" and n.manager_status == "unreachable")]


class JoinTokens:
    """The two join tokens; never shown by repr or str, so they cannot leak into a log."""

    __slots__ = ("manager", "worker")

    def __init__(self, manager: str, worker: str) -> None:
        for token in (manager, worker):
            if not token.startswith("SWMTKN-1-"):
                raise SwarmError("a manager answered something that is not a join token")
        self.manager = manager
        self.worker = worker

    def __repr__(self) -> str:
        return "JoinTokens(<hidden>)"

    __str__ = __repr__


def parse_nodes(output: str) -> list[Node]:
    """Parse the output of NODE_QUERY (the API's nodes), in the order `docker node ls`
    lists them: by hostname, numbers compared as numbers."""
    nodes = [_node_of(entry) for entry in json.loads(output)]
    return sorted(nodes, key=lambda n: _natural(n.hostname))


def _node_of(entry: Mapping[str, Any]) -> Node:
    # A node still joining has no description yet (no hostname, no engine) and may have no
    # state or address: as the CLI does, it is shown with what there is, never refused.
    spec, described = entry.get("Spec") or {}, entry.get("Description") or {}
    status, manager = entry.get("Status") or {}, entry.get("ManagerStatus") or {}
    return Node(
        id=entry["ID"],
        hostname=described.get("Hostname", ""),
        role=spec.get("Role") or ("manager" if manager else "worker"),
        status=status.get("State") or "unknown",
        availability=spec.get("Availability", ""),
        # As the CLI shows it: a manager is its leader or its raft reachability.
        manager_status="leader" if manager.get("Leader") else manager.get("Reachability"),
        address=status.get("Addr", ""),
        engine_version=(described.get("Engine") or {}).get("EngineVersion", ""),
    )


def _natural(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", text) if part]


def shown_name(node: Node) -> str:
    """The node's hostname; a node still joining has none yet, and is named by its ID."""
    return node.hostname or f"node {node.id[:12]} (no hostname yet)"


def assess(nodes: Sequence[Node], managers: int, workers: int,
           ignore: frozenset[str] = frozenset()) -> Health:
    """Healthy = one leader, every manager reachable, every node ready, counts as expected.

    Nodes whose IDs are in ``ignore`` (on their way out) are not judged or counted,
    but may still be the leader.
    """
    problems = []
    leaders = [n for n in nodes if n.manager_status == "leader"]
    if len(leaders) != 1:
        problems.append(f"{len(leaders)} leaders (want 1)")
    nodes = [n for n in nodes if n.id not in ignore]
    for node in nodes:
        if node.status != "ready":
            problems.append(f"{shown_name(node)} is {node.status}")
        elif node.role == "manager" and node.manager_status not in ("leader", "reachable"):
            problems.append(f"manager {node.hostname} is {node.manager_status}")
    have_managers = sum(n.role == "manager" for n in nodes)
    have_workers = sum(n.role == "worker" for n in nodes)
    if have_managers != managers:
        problems.append(f"{have_managers} managers (want {managers})")
    if have_workers != workers:
        problems.append(f"{have_workers} workers (want {workers})")
    return Health(tuple(nodes), tuple(problems))


class Swarm:
    """A swarm reached through any of its managers' SSH addresses."""

    def __init__(self, ssh: SSH, manager_hosts: Sequence[str],
                 dead_after: float = DEAD_AFTER,
                 unlocker: Unlocker | None = None) -> None:
        self.ssh = ssh
        self.manager_hosts = list(manager_hosts)
        self.dead_after = dead_after  # how long a wait for health gives a dead node
        # Unlocks a manager whose Docker restarted locked (autolock): the use case's, which
        # knows where the key is. None: a locked manager is only named so.
        self.unlocker = unlocker
        self._answering: str | None = None  # the manager that last answered for the swarm

    def member_state(self, host: str) -> dict[str, object]:
        """``docker info``'s Swarm section on ``host`` (LocalNodeState, ControlAvailable, ...)."""
        state: dict[str, object] = json.loads(self.ssh.check(host, SWARM_STATE, "docker info"))
        return state

    def answers(self, host: str) -> bool:
        """Whether ``host`` can be reached over SSH at all (one try, a short deadline)."""
        try:
            return SSH(self.ssh.profile, attempts=1).run(host, "true", timeout=15).ok
        except CommandError:  # unreachable: ssh's own failure (255), or the deadline
            return False

    def active_manager(self, passed_over: str | None = None) -> str:
        """The SSH address of a manager that is in the swarm and can answer for it (not
        ``passed_over``: one SSH could not reach just now)."""
        tried = [f"{passed_over}: not reached over SSH"] if passed_over else []
        for host in (h for h in self.manager_hosts if h != passed_over):
            try:
                state, quorum = self._manager_check(host)
                if state.get("LocalNodeState") == "locked" and self.unlocker:
                    self.unlocker.unlock(host)
                    state, quorum = self._manager_check(host)
            except CommandError as exc:
                tried.append(f"{host}: {exc.what} failed")
                continue
            except SwarmError as exc:  # locked, and no stored key opens it: ask the next one
                tried.append(str(exc))
                continue
            if state.get("LocalNodeState") == "active" and state.get("ControlAvailable"):
                if quorum == "quorum":
                    self._answering = host
                    return host
                tried.append(f"{host}: has no quorum")
                continue
            tried.append(f"{host}: not an active manager ({state.get('LocalNodeState')})")
        raise SwarmError("no manager answers for the swarm (" + "; ".join(tried) + ")")

    def answered_by(self, host: str) -> None:
        """``host`` has just answered a manager command: the next ones ask it first."""
        self._answering = host

    def _manager_check(self, host: str) -> tuple[dict[str, object], str]:
        """``host``'s swarm state, and "quorum" if it can list the nodes (MANAGER_CHECK)."""
        state_line, _, quorum = self.ssh.check(host, MANAGER_CHECK, "docker info").partition("\n")
        state: dict[str, object] = json.loads(state_line)
        return state, quorum.strip()

    def unlock_locked(self, always: bool = False) -> bool:
        """Unlock every manager whose Docker restarted locked, when autolock is known to be on
        (its key is stored) or ``always`` (a manager looks dead: a locked one with no key
        stored is then named, not waited for). Each is asked once, with a short deadline:
        one that does not answer is passed over, and a wait for health names it. True when
        it unlocked one."""
        if not self.unlocker or not (always or self.unlocker.armed):
            return False
        once = SSH(self.ssh.profile, attempts=1)
        unlocked = False
        for host in self.manager_hosts:
            try:
                answer = once.check(host, SWARM_STATE, "docker info", timeout=15)
                locked = json.loads(answer).get("LocalNodeState") == "locked"
            except (CommandError, ValueError):
                continue
            if locked:
                self.unlocker.unlock(host)
                unlocked = True
        return unlocked

    def nodes(self, via: str | None = None) -> list[Node]:
        return parse_nodes(self.manage(via or self.active_manager(), NODE_QUERY, "docker node ls"))

    def join_tokens(self, via: str) -> JoinTokens:
        # Both tokens in one call; they come back only in memory, on ssh's stdout.
        result = self.ssh.run(via, "docker swarm join-token -q manager && "
                                   "docker swarm join-token -q worker",
                              what="docker swarm join-token")
        if not result.ok:  # its stdout may hold the manager's token already: only stderr says why
            raise CommandError(f"docker swarm join-token on {via}", result.returncode,
                               result.stderr)
        lines = result.stdout.split()
        if len(lines) != 2:
            raise SwarmError(f"{via} did not return two join tokens")
        return JoinTokens(manager=lines[0], worker=lines[1])

    def drain(self, node: Node, via: str) -> None:
        """Stop scheduling onto ``node`` and move its tasks elsewhere."""
        self.manage(via, f"docker node update --availability drain {node.id} >/dev/null",
                     f"drain {node.hostname}")

    def activate(self, node: Node, via: str) -> None:
        """Let the scheduler place tasks on ``node`` again (after a drain)."""
        self.manage(via, f"docker node update --availability active {node.id} >/dev/null",
                    f"make {node.hostname} active")

    def running_tasks(self, node: Node, via: str) -> int:
        """Tasks the orchestrator still wants running on ``node``."""
        out = self.manage(via, f"docker node ps {node.id} -q --filter desired-state=running",
                           f"tasks on {node.hostname}")
        return len(out.split())

    def wait_drained(self, node: Node, via: str, timeout: float) -> None:
        """Wait (bounded) until the tasks of a drained node run elsewhere."""
        deadline = time.monotonic() + timeout
        while (left := self.running_tasks(node, via)) > 0:
            if time.monotonic() > deadline:
                raise SwarmError(f"{node.hostname} still has {left} task(s) after {timeout:.0f}s "
                                 "of draining: the other nodes may lack room or the image")
            time.sleep(RECHECK)

    def demote(self, node: Node, via: str) -> None:
        """Make a manager a worker; Docker itself refuses if that would lose quorum.
        (Demoting a worker is no change, and no error: a retry after an election is safe.)"""
        self.manage(via, f"docker node demote {node.id}", f"demote {node.hostname}")

    def rotate_tokens(self, via: str) -> None:
        """New join tokens for both roles: the ones that travelled become useless.

        The new tokens are printed by Docker; they go to /dev/null on the node.
        """
        self.manage(via, "docker swarm join-token --rotate -q worker >/dev/null && "
                          "docker swarm join-token --rotate -q manager >/dev/null",
                     "docker swarm join-token --rotate")

    def remove(self, node: Node, via: str) -> None:
        """Take a node that is gone or going out of the swarm: demote it first if a manager.

        Docker refuses a demote that would lose quorum; that refusal is raised as is.
        """
        if node.role == "manager":
            self.demote(node, via)
        # An answer lost in an election may hide a removal that was made: if a retry finds
        # the node gone, it is gone.
        self.manage(via, f"docker node rm --force {node.id} 2>&1 || "
                          f"{{ left=$(docker node ls -q --filter id={node.id}) && [ -z \"$left\" ]; }}",
                     f"remove {node.hostname}")

    def manage(self, via: str, command: str, what: str, deadline: float | None = None) -> str:
        """Run a manager command on ``via``; while the managers elect a leader, wait and ask
        again, until ``deadline`` (monotonic; default RAFT_SETTLE from now). Anything else
        fails at once."""
        deadline = time.monotonic() + RAFT_SETTLE if deadline is None else deadline
        while True:
            try:
                return self.ssh.check(via, command, what)
            except CommandError as exc:
                if not in_election(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(RECHECK * 4)

    def health(self, managers: int, workers: int, ignore: frozenset[str] = frozenset()) -> Health:
        """Health judged without the nodes whose IDs are in ``ignore`` (ones on their way out)."""
        try:
            return assess(self.nodes(), managers, workers, ignore)
        except SwarmError as exc:
            return Health((), (str(exc),))

    def wait_healthy(self, managers: int, workers: int, timeout: float,
                     on_wait: Callable[[Health], None] = lambda h: None,
                     streak: int = 2, interval: float = 1.0,
                     ignore: frozenset[str] = frozenset(),
                     dead_after: float | None = None,
                     on_healthy: Callable[[str], None] | None = None) -> Health:
        """Poll until healthy ``streak`` times in a row: one lucky poll proves little.

        Each look after the first is asked of another manager, at once (``_confirmed_by``):
        its `docker node ls` answers only while it has a leader and quorum, so it proves
        that manager's own raft link, which a second look through the same manager 1 s
        later cannot (Docker's own failure detection takes seconds: raft's election
        timeout is 10 ticks of 1 s, a node's heartbeat period 5 s). With no other manager
        to ask, or none answering, the look is the same manager's, ``interval`` later.

        "Not yet" (a node joining, a count short, no leader for a moment) is waited for up to
        ``timeout``; "cannot happen" is not: a node outside ``ignore`` that stays Down or
        unreachable for ``dead_after`` seconds (None: this swarm's) raises DeadNodeError at
        once, naming it.

        While it is not healthy yet it looks again sooner (RECHECK): that finds the first
        good poll earlier. The manager that last answered is polled again; another is
        sought only if it stops answering. ``on_healthy`` runs once, with that manager,
        after the first healthy poll, while the next look is taken; the wait ends only
        once it did (its error is raised).
        """
        # The other managers' shared connections are opened while the first looks: the
        # second look then costs its command, not an SSH handshake.
        first = self._answering or next(iter(self.manager_hosts), None)
        with self.connected_ahead(h for h in self.manager_hosts if h != first):
            return self._wait_healthy(managers, workers, timeout, on_wait, streak, interval,
                                      ignore, dead_after, on_healthy)

    @contextlib.contextmanager
    def connected_ahead(self, hosts: Iterable[str]) -> Iterator[None]:
        """``connect_ahead`` for the block's length: its threads are joined as it ends (each
        is bounded by CONFIRM_TIMEOUT), whether or not it failed."""
        threads = self.connect_ahead(hosts)
        try:
            yield
        finally:
            for thread in threads:
                thread.join()

    def connect_ahead(self, hosts: Iterable[str]) -> list[threading.Thread]:
        """Open the shared SSH connections (ControlMaster) to ``hosts`` in the background,
        one try each with a short deadline; a host that does not answer is left to the
        command that needs it. The threads, to join."""
        once = SSH(self.ssh.profile, attempts=1)

        def connect(host: str) -> None:
            with contextlib.suppress(CommandError):
                once.run(host, "true", timeout=CONFIRM_TIMEOUT)

        threads = [threading.Thread(target=connect, args=(h,), daemon=True) for h in hosts]
        for thread in threads:
            thread.start()
        return threads

    def _wait_healthy(self, managers: int, workers: int, timeout: float,
                      on_wait: Callable[[Health], None], streak: int, interval: float,
                      ignore: frozenset[str], dead_after: float | None,
                      on_healthy: Callable[[str], None] | None) -> Health:
        deadline = time.monotonic() + timeout
        dead_after = self.dead_after if dead_after is None else dead_after
        good = 0
        via = self._answering
        reported: tuple[tuple[str, ...], float] = ((), float("-inf"))  # what on_wait got, when
        dead_since: dict[str, float] = {}  # node ID: when it was first seen dead, this run
        while True:
            health, via = self._health_via(via, managers, workers, ignore)
            polled = time.monotonic()
            good = good + 1 if health.healthy else 0
            if good >= streak:
                return health
            beside = None
            if health.healthy and via and on_healthy:  # while another manager looks
                beside = Beside(functools.partial(on_healthy, via))
                on_healthy = None
            asked = {via}
            while health.healthy and good < streak:
                other = self._confirmed_by(asked, health, managers, workers, ignore)
                if other is None:  # no other manager answered: the same one, interval later
                    break
                health = other
                good = good + 1 if health.healthy else 0
            if beside:
                beside.result()
            if good >= streak:
                return health
            now = time.monotonic()
            dead = dead_nodes(health.nodes)
            if any(n.role == "manager" and n.id not in dead_since for n in dead):
                self.unlock_locked(always=True)  # a locked manager looks dead until unlocked
            dead_since = {n.id: dead_since.get(n.id, now) for n in dead}
            gone = [n for n in dead if now - dead_since[n.id] >= dead_after]
            if gone:
                raise DeadNodeError(gone)
            if now > deadline:
                raise UnhealthyError("the swarm is not healthy after "
                                     f"{timeout:.0f}s: {'; '.join(health.problems)}")
            if not health.healthy and (health.problems != reported[0]
                                       or now - reported[1] >= interval):
                on_wait(health)
                reported = (health.problems, now)
            pause = interval if health.healthy else min(interval, RECHECK)
            time.sleep(max(0.0, polled + pause - time.monotonic()))

    def _confirmed_by(self, asked: set[str | None], seen: Health, managers: int, workers: int,
                      ignore: frozenset[str]) -> Health | None:
        """Health as one manager not yet ``asked`` sees it, or None if none is left that
        answers. A manager ``seen`` as sound is asked first (a host is matched to its node
        by address, where the SSH address is the swarm's); each is tried once, with a short
        deadline, and an election in flux counts as not healthy."""
        sound = {n.address for n in seen.managers if is_sound(n) and n.id not in ignore}
        once = SSH(self.ssh.profile, attempts=1)
        for host in sorted((h for h in self.manager_hosts if h not in asked),
                           key=lambda h: h not in sound):
            asked.add(host)
            try:
                listing = once.check(host, NODE_QUERY, "docker node ls", timeout=CONFIRM_TIMEOUT)
            except CommandError as exc:
                if in_election(exc):  # in flux: not yet
                    return Health(seen.nodes, ("the swarm changed while it was read",))
                continue
            return assess(parse_nodes(listing), managers, workers, ignore)
        return None

    def _health_via(self, via: str | None, managers: int, workers: int,
                    ignore: frozenset[str]) -> tuple[Health, str | None]:
        """Health as the manager ``via`` sees it (its `docker node ls` works only while it has
        quorum); when it cannot answer, as the next manager that does."""
        if via:
            try:
                return assess(self.nodes(via), managers, workers, ignore), via
            except CommandError:
                self._answering = None  # it went down, left or lost quorum: find one that answers
        return self._health_of_another(managers, workers, ignore)

    def _health_of_another(self, managers: int, workers: int, ignore: frozenset[str],
                           passed_over: str | None = None) -> tuple[Health, str | None]:
        try:
            via = self.active_manager(passed_over)
        except SwarmError as exc:
            return Health((), (str(exc),)), None
        return assess(self.nodes(via), managers, workers, ignore), via

    def first_look(self, managers: int, workers: int) -> tuple[Health, str | None]:
        """Health as the first manager sees it, and that manager (None: none answered).
        It is asked for the listing straight away, once, with a short deadline: its `docker
        node ls` answers only while it is an active manager with a leader and a quorum, the
        check ``active_manager`` makes, so one SSH round does for both. When it gives no
        listing (down, locked, in an election), the managers are asked as ``active_manager``
        asks them, but for the first when SSH could not reach it: asking again would only
        wait out SSH's deadline and retries once more."""
        first = next(iter(self.manager_hosts), None)
        unreached = None
        if first is not None:
            once = SSH(self.ssh.profile, attempts=1)
            try:
                listing = once.check(first, NODE_QUERY, "docker node ls", timeout=CONFIRM_TIMEOUT)
                self._answering = first
                return assess(parse_nodes(listing), managers, workers), first
            except CommandError as exc:
                unreached = first if exc.returncode == SSH_UNREACHABLE else None
        return self._health_of_another(managers, workers, frozenset(), passed_over=unreached)


def in_election(error: CommandError) -> bool:
    """Whether a manager's refusal says only that the managers are electing a leader."""
    return any(words in error.output for words in RAFT_IN_FLUX)


def member_at(nodes: Sequence[Node], address: str) -> Node | None:
    """The swarm's node at ``address``; a ready one before stale entries of an older host."""
    found = [n for n in nodes if n.address == address]
    found.sort(key=lambda n: n.status != "ready")
    return found[0] if found else None


def is_sound(node: Node) -> bool:
    """Ready, and if a manager, part of the raft majority's view."""
    return node.status == "ready" and (
        node.role == "worker" or node.manager_status in ("leader", "reachable"))


def node_table(nodes: Sequence[Node], notes: Mapping[str, str] | None = None) -> str:
    """The nodes as an aligned text table, managers first; with ``notes`` ({address: text},
    what the target says of a node beyond the swarm's view) a last column, NOTE."""
    header: tuple[str, ...] = ("HOSTNAME", "ROLE", "STATUS", "AVAILABILITY", "MANAGER", "ADDRESS",
                               "ENGINE")
    noted = bool(notes)
    rows = [header + (("NOTE",) if noted else ())] + [
        (n.hostname, n.role, n.status, n.availability, n.manager_status or "-", n.address,
         n.engine_version) + (((notes or {}).get(n.address, ""),) if noted else ())
        for n in sorted(nodes, key=lambda n: (n.role != "manager", n.hostname))
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
