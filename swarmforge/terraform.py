"""The Terraform adapter: the only module that touches python-terraform.

python-terraform 0.10.1 predates Terraform 0.15 and several of its helpers are
wrong for the Terraform we run, so we use it only to build argv
(``generate_cmd_string``) and run every command ourselves:

- ``cmd()`` can only hand the child a copy of *our* environment; join tokens must
  reach Terraform as TF_VAR_* in the child's environment alone, so we run argv
  with an explicit child env (swarmforge.process).
- ``variables=`` dicts become a temp var-file on disk: we pass ``var`` as a list
  of ``name=value`` (non-secret values only; argv is visible in ``ps``).
- ``apply()`` without ``skip_plan`` emits ``-auto-approve=false`` and can wait on
  stdin; ``destroy()`` always adds ``-force``, gone since 0.15: we spell our flags.
- ``output(name)`` cannot read the bare values printed since 0.12: we read
  ``output -json`` whole.
- ``raise_on_error`` defaults to False: every non-zero exit here raises.

Every command has a deadline (``timeout``: swarmforge.terraform_timeout); past it
Terraform gets SIGINT and time to stop cleanly (swarmforge.process), and
CommandTimeout says whether its state lock was released. A command refused
because the state is locked (a lock a killed run left: a ``.tflock`` in S3)
fails with StateLockedError: one line with the lock's ID, holder and age, and
the command that clears it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from python_terraform import IsFlagged
from python_terraform import Terraform as _PythonTerraform

from swarmforge.errors import CommandError, CommandTimeout, SwarmforgeError, ToolError
from swarmforge.private_files import open_private, private_dirs, write_private
from swarmforge.process import DEFAULT_TIMEOUT, Completed, run, stream
from swarmforge.terraform_output import (
    Plan,
    diagnostics,
    missing_provider,
    planned_changes,
    progress_message,
    started_resource,
)

TOKEN_PREFIX = "SWMTKN-"
BACKEND_CONFIG_FILE = "backend.tfbackend"  # in the workdir; bucket, key, region: no secret
ProgressSink = Callable[[str], None]
TIMEOUT_SETTING = "swarmforge.terraform_timeout"


class TerraformError(CommandError):
    """A Terraform command failed; ``output`` holds its error diagnostics."""


@dataclass(frozen=True)
class StateLock:
    """A Terraform state lock, as Terraform's "Lock Info" describes it."""

    id: str
    who: str
    created: str
    operation: str


class StateLockedError(TerraformError):
    """Terraform could not lock the state: another run holds the lock, or a dead one left it."""

    exit_code = 4  # as for a cluster busy with another operation

    def __init__(self, what: str, returncode: int, lock: StateLock, unlock: str) -> None:
        super().__init__(what, returncode)
        self.lock = lock
        self.args = (f"{what} failed: Terraform's state is locked (lock ID {lock.id}, "
                     f"{lock.operation or 'an operation'} by {lock.who or 'someone'} since "
                     f"{lock.created or '?'}); if no Terraform run is still going, clear it: "
                     f"{unlock.format(id=lock.id)}",)

    def __str__(self) -> str:
        return str(self.args[0])


def state_lock(output: str) -> StateLock | None:
    """The lock Terraform names when it could not acquire the state lock, if that is why
    ``output`` (its diagnostics, as text) says it failed."""
    if "Error acquiring the state lock" not in output:
        return None
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # commands without -no-color
    # Each line as Terraform frames it ("│   ID:   ..."), or bare.
    info = dict(re.findall(r"^[^\w\n]*(ID|Who|Created|Operation):[ \t]*(.*?)\s*$", plain, re.M))
    if not info.get("ID"):
        return None
    return StateLock(info["ID"], info.get("Who", ""), info.get("Created", ""),
                     info.get("Operation", ""))


def required_version(config_dir: Path) -> SpecifierSet:
    """The ``required_version`` a Terraform config declares, as a packaging specifier."""
    text = "\n".join(p.read_text() for p in sorted(config_dir.glob("*.tf")))
    match = re.search(r'required_version\s*=\s*"([^"]+)"', text)
    if not match:
        return SpecifierSet()
    return _to_specifier(match.group(1))


def _to_specifier(constraint: str) -> SpecifierSet:
    parts = []
    for part in constraint.split(","):
        match = re.fullmatch(r"\s*(~>|>=|<=|!=|>|<|=)?\s*(\S+)\s*", part)
        if not match:
            raise ToolError(f"cannot read required_version {constraint!r}")
        op, version = match.groups()
        parts.append({"~>": "~=", "=": "==", None: "=="}.get(op, op) + version)
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier as exc:
        raise ToolError(f"cannot read required_version {constraint!r}: {exc}") from exc


class Terraform:
    """Terraform run in one working directory, its output streamed as progress."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        progress: ProgressSink = lambda line: None,
        log_file: Path | None = None,
        timeout: float | None = None,
        unlock: str = "terraform force-unlock {id}",
    ) -> None:
        """``timeout``: seconds any one command may run (swarmforge.terraform_timeout);
        None: the process module's fixed deadline. ``unlock``: the command that clears a
        state lock with the ID ``{id}``, as a StateLockedError says it."""
        self.binary = binary
        self.workdir = workdir
        self.base_env = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
                         **(env or {})}
        self.progress = progress
        self.log_file = log_file
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._setting = "" if timeout is None else TIMEOUT_SETTING
        self.unlock = unlock
        self.lock_timeout = "60s"  # how long a command waits for the state lock
        self._argv_builder = _PythonTerraform(working_dir=str(workdir), terraform_bin_path=binary)

    # -- version ------------------------------------------------------------

    def version(self) -> Version:
        result = self._run([self.binary, "version", "-json"], "terraform version", in_workdir=False)
        try:
            return Version(json.loads(result.stdout)["terraform_version"])
        except (ValueError, KeyError, InvalidVersion) as exc:
            raise ToolError(f"cannot tell the version of {self.binary}: {result.stderr.strip()}") from exc

    def require(self, spec: SpecifierSet, config: str) -> Version:
        """Fail clearly when this Terraform is older than ``config`` declares it needs."""
        found = self.version()
        if not spec.contains(found, prereleases=True):
            raise ToolError(f"{config} needs Terraform {spec}, but {self.binary} is {found}; "
                            "install a newer one or set swarmforge.terraform_bin")
        return found

    # -- commands -----------------------------------------------------------

    def init(self, backend_settings: str | None = None) -> None:
        """``terraform init``; ``backend_settings`` fill a partial backend block (-backend-config)."""
        backend_config = None
        if backend_settings is not None:
            backend_config = self.workdir / BACKEND_CONFIG_FILE
            write_private(backend_config, backend_settings)
        argv = self._argv("init", input=False, no_color=IsFlagged, reconfigure=IsFlagged,
                          backend_config=str(backend_config) if backend_config else None)
        try:
            self._stream(argv, {}, "terraform init", json_lines=False, quiet=True)
        except TerraformError as error:
            missing = missing_provider(error.output)
            if missing:
                raise ToolError(f"terraform init cannot install {missing}; full log: "
                                f"{self.log_file or self.workdir}") from error
            raise

    def plan(self, variables: Mapping[str, str], secrets: Mapping[str, str],
             targets: Sequence[str] = (), replace: Sequence[str] = ()) -> Plan:
        argv = self._argv("plan", input=False, no_color=IsFlagged, json=IsFlagged,
                          lock_timeout=self.lock_timeout, var=_var_args(variables), target=list(targets),
                          replace=list(replace))
        result = self._stream(argv, secrets, "terraform plan", quiet=True)
        return Plan(tuple(planned_changes(result.stdout)))

    def apply(self, variables: Mapping[str, str], secrets: Mapping[str, str], *,
              targets: Sequence[str] = (), replace: Sequence[str] = (), parallelism: int = 10,
              destroy: bool = False, refresh_only: bool = False, refresh: bool = True,
              on_start: Callable[[str], None] | None = None) -> None:
        """``refresh`` False: the state is taken as it is (-refresh=false), for an apply right
        after another of the same run, whose state is seconds old. ``on_start`` gets the
        address of each resource instance as Terraform begins to make or change it."""
        argv = self._argv("apply", input=False, no_color=IsFlagged, json=IsFlagged,
                          auto_approve=IsFlagged, lock_timeout=self.lock_timeout,
                          destroy=IsFlagged if destroy else None,
                          refresh_only=IsFlagged if refresh_only else None,
                          refresh=None if refresh else False,
                          parallelism=parallelism, var=_var_args(variables), target=list(targets),
                          replace=list(replace))
        self._stream(argv, secrets, "terraform destroy" if destroy else "terraform apply",
                     on_start=on_start)

    def move(self, source: str, destination: str) -> None:
        """Give the object at ``source`` the address ``destination`` (``terraform state mv``).

        The outputs in the state still show the old addresses until the next apply.
        """
        argv = self._argv("state mv", source, destination, lock_timeout=self.lock_timeout)
        self._stream(argv, {}, f"terraform state mv {source} {destination}", json_lines=False,
                     quiet=True)

    def force_unlock(self, lock_id: str) -> None:
        """Remove the state lock ``lock_id`` (``terraform force-unlock -force``): only once no
        Terraform run holds it any more."""
        argv = self._argv("force-unlock", lock_id, force=IsFlagged)
        self._stream(argv, {}, "terraform force-unlock", json_lines=False, quiet=True)

    def addresses(self) -> list[str]:
        """Every resource address in the state (``terraform state list``)."""
        result = self._run([self.binary, "state", "list"], "terraform state list")
        if not result.ok:
            raise TerraformError("terraform state list", result.returncode, result.stderr)
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def node_names(self) -> dict[str, str]:
        """{address: node name} of every node in the state (``terraform show -json``), from
        what the configs name it by: an instance's Name tag, a sandbox host's triggers."""
        result = self._run([self.binary, "show", "-json", "-no-color"], "terraform show")
        if not result.ok:
            raise TerraformError("terraform show", result.returncode, result.stderr)
        module = (json.loads(result.stdout or "{}").get("values") or {}).get("root_module") or {}
        names = {}
        for resource in module.get("resources", []):
            values = resource.get("values") or {}
            name = (values.get("tags") or {}).get("Name") or (values.get("triggers") or {}).get("host")
            if name:
                names[resource["address"]] = str(name)
        return names

    def outputs(self) -> dict[str, Any]:
        result = self._run([self.binary, "output", "-json", "-no-color"], "terraform output")
        if not result.ok:
            raise TerraformError("terraform output", result.returncode, result.stderr)
        return {name: item.get("value") for name, item in json.loads(result.stdout or "{}").items()}

    # -- plumbing -----------------------------------------------------------

    def _argv(self, command: str, *args: str, **options: Any) -> list[str]:
        argv: list[str] = self._argv_builder.generate_cmd_string(command, *args, **options)
        return argv

    def _run(self, argv: list[str], what: str, *, in_workdir: bool = True) -> Completed:
        try:
            return run(argv, env=self.base_env, cwd=str(self.workdir) if in_workdir else None,
                       timeout=self.timeout, what=what, setting=self._setting)
        except CommandTimeout as timeout:
            raise (self._stopped(timeout) if in_workdir else timeout) from None

    def _stream(self, argv: list[str], secrets: Mapping[str, str], what: str, *,
                json_lines: bool = True, quiet: bool = False,
                on_start: Callable[[str], None] | None = None) -> Completed:
        env = {**self.base_env, **_secret_env(secrets)}
        sink = self._json_progress if json_lines else self.progress
        if on_start is not None:
            sink = _watching_starts(sink, on_start)
        try:
            result = stream(argv, (lambda _line: None) if quiet else sink, env=env,
                            cwd=str(self.workdir), timeout=self.timeout, what=what,
                            setting=self._setting)
        except CommandTimeout as timeout:
            self._keep_log(argv, Completed(tuple(argv), timeout.returncode, timeout.output, "",
                                           timeout.seconds))
            raise self._stopped(timeout) from None
        self._keep_log(argv, result)
        if not result.ok:
            detail = diagnostics(result.stdout) if json_lines else result.stdout
            lock = state_lock(detail)
            if lock:
                raise StateLockedError(what, result.returncode, lock, self.unlock)
            raise TerraformError(what, result.returncode, detail,
                                 hint=f"full log: {self.log_file}" if self.log_file else "")
        return result

    def _stopped(self, timeout: CommandTimeout) -> CommandTimeout:
        """``timeout``, saying what became of the state and its lock, and where the log is."""
        if timeout.killed_after is None:  # it stopped on SIGINT: state written, lock released
            timeout.detail = "Terraform stopped cleanly: its state is kept and its lock released."
        else:
            timeout.detail = ("Its state keeps what Terraform had written; if the next run says "
                              f"the state is locked, it names the lock's ID and the command "
                              f"that clears it: `{self.unlock.format(id='<ID>')}`.")
        timeout.log = str(self.log_file or "")
        return timeout

    def _json_progress(self, line: str) -> None:
        message = progress_message(line)
        if message:
            self.progress(message)

    def _keep_log(self, argv: list[str], result: Completed) -> None:
        if self.log_file is None:
            return
        private_dirs(self.log_file.parent)
        with open_private(self.log_file) as log:
            log.write(f"$ {' '.join(argv)}  (exit {result.returncode}, {result.seconds:.1f}s)\n")
            log.write(result.stdout + "\n")


def _watching_starts(sink: Callable[[str], None],
                     on_start: Callable[[str], None]) -> Callable[[str], None]:
    def watched(line: str) -> None:
        sink(line)
        address = started_resource(line)
        if address:
            on_start(address)
    return watched


def _var_args(variables: Mapping[str, str]) -> list[str]:
    for name, value in variables.items():
        if TOKEN_PREFIX in str(value):
            raise SwarmforgeError(f"refusing to pass {name} on the command line: it holds a "
                                  "join token; tokens go only in the child environment")
    return [f"{name}={value}" for name, value in variables.items()]


def _secret_env(secrets: Mapping[str, str]) -> dict[str, str]:
    return {f"TF_VAR_{name}": value for name, value in secrets.items()}
