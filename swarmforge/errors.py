"""The errors swarmforge raises.

Every error carries what an operator needs to act on it and prints nothing when
created; the task layer turns it into one clean exit. No error holds a secret: its
text goes through ``redact`` when it is made and when it is shown (a command's output
may hold a join token).
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmforge.redact import redact


class SwarmforgeError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))

    def __str__(self) -> str:
        return redact(super().__str__())


class ConfigError(SwarmforgeError):
    """Settings or flags that cannot work; raised before anything is created."""

    exit_code = 2

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ToolError(SwarmforgeError):
    """A required tool is missing or too old."""


class CommandError(SwarmforgeError):
    """An external command failed; keeps the command name and the tail of its output."""

    def __init__(self, what: str, returncode: int, output: str = "", hint: str = "") -> None:
        self.what = what
        self.returncode = returncode
        self.output = redact(output)  # a command may print a token: never kept
        self.hint = hint
        message = f"{what} failed (exit {returncode})"
        tail = last_lines(self.output, 15)
        if tail:
            message += f":\n{tail}"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


class SSHConnectionError(CommandError):
    """ssh could not reach the host (exit 255): worth retrying, unlike a failed remote command."""


class CommandTimeout(CommandError):
    """An external command ran past its deadline and was stopped, with every process it started.

    Its message is one line: what ran, for how long, the setting that sets the deadline,
    then what became of the work (``detail``, from the adapter that ran it) and how to
    carry on (``resume``, from the caller that knows the operation; the interface says
    "run the same command again" when nobody did); ``log`` adds a "full log:" line.
    """

    def __init__(self, what: str, seconds: float, *, setting: str = "", returncode: int = -1,
                 output: str = "", killed_after: float | None = None) -> None:
        super().__init__(what, returncode, output)
        self.seconds = seconds
        self.setting = setting  # e.g. swarmforge.terraform_timeout; "" for a fixed deadline
        self.killed_after = killed_after  # seconds it had to stop on SIGINT before SIGKILL
        self.detail = ""
        self.resume = ""
        self.log = ""

    def __str__(self) -> str:
        setting = f" ({self.setting})" if self.setting else ""
        stopped = ("it was stopped" if self.killed_after is None else
                   f"it did not stop within {duration(self.killed_after)} of SIGINT and was killed")
        sentences = [f"{self.what} did not finish within {duration(self.seconds)}{setting}; "
                     f"{stopped}.", self.detail, self.resume]
        line = " ".join(sentence for sentence in sentences if sentence)
        return redact(line + (f"\nfull log: {self.log}" if self.log else ""))


def duration(seconds: float) -> str:
    """``seconds`` as people say it: 1 s, 90 s, 5 min, 2 h."""
    if seconds >= 7200 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a run: a KeyboardInterrupt still, which says where.

    ``where``: the step under way (the innermost one that knew); ``resume``: how to carry
    on, from the operation that journals its steps. The interface shows it as one line and
    exits 130, as a shell does for a command SIGINT ended."""

    exit_code = 130

    def __init__(self, where: str = "", resume: str = "") -> None:
        super().__init__(where)
        self.where = where
        self.resume = resume

    def __str__(self) -> str:
        line = "interrupted" + (f" during {self.where}" if self.where else "")
        return redact(line + (f"; {self.resume}" if self.resume else ""))


def interrupted(exc: KeyboardInterrupt, where: str = "") -> Interrupted:
    """``exc`` as an Interrupted, saying ``where`` unless an inner step said it already."""
    if isinstance(exc, Interrupted):
        if not exc.where:
            exc.where = where
        return exc
    return Interrupted(where)


class SwarmError(SwarmforgeError):
    """The swarm is not in the state an operation needs."""


class QuorumError(SwarmError):
    """Going on would leave the swarm without a manager majority."""


class UnhealthyError(SwarmError):
    """The swarm did not become healthy before the deadline."""


class SandboxError(SwarmforgeError):
    """The local sandbox could not create, start or remove a host."""


def last_lines(text: str, count: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-count:])


class PackerBuildError(CommandError):
    """``packer build`` failed; carries Packer's own error messages and the full log's path."""

    def __init__(self, returncode: int, errors: Sequence[str], log_path: str) -> None:
        self.errors = list(errors)
        self.log_path = log_path
        super().__init__(
            "packer build", returncode, "\n".join(self.errors), hint=f"Full log: {log_path}"
        )


class PackerOutputError(SwarmforgeError):
    """Packer's output cannot be trusted: it contradicts itself or its manifest."""


class AmiError(SwarmforgeError):
    """An AMI operation was refused or found the AMIs in an unexpected state."""


class StateBackendError(SwarmforgeError):
    """The Terraform state bucket or lock table cannot be used as it is."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class StateBucketForbiddenError(StateBackendError):
    """The state bucket exists but is not ours: another account owns it, or we may not read it."""


class StateBucketRegionError(StateBackendError):
    """The state bucket exists in another region than the one configured."""

    def __init__(self, name: str, expected_region: str, actual_region: str) -> None:
        self.expected_region = expected_region
        self.actual_region = actual_region
        super().__init__(
            name,
            f"State bucket {name!r} is in {actual_region}, not {expected_region}: "
            f"set the region to {actual_region} or choose another bucket name.",
        )
