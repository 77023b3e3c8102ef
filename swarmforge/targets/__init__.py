"""Where the nodes run: the one seam between the pipeline and the machines.

``target_for`` is the only place that turns a target's name into code; nothing
outside this package asks which target it is running on.
"""

from __future__ import annotations

from swarmforge.errors import ConfigError
from swarmforge.settings import Settings
from swarmforge.targets.base import Target


def target_for(settings: Settings) -> Target:
    """The target the settings name, checked for what it needs before anything runs."""
    # Imported here: the sandbox's own command (`python -m swarmforge.targets.local`)
    # runs once per host and needs neither target, nor boto3.
    if settings.target == "local":
        from swarmforge.targets.local.target import LocalTarget

        return LocalTarget(settings)
    if settings.target == "aws":
        from swarmforge.targets.aws.target import AwsTarget

        return AwsTarget(settings)
    raise ConfigError([f"target: unknown target {settings.target!r}; choose local or aws"])
