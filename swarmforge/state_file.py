"""Terraform's state read as the file it is, without Terraform.

What an apply's preview needs (which nodes exist, which have joined) is in the
state's outputs, and it must be shown before `terraform init`: on aws the
provider is only fetched from init on. Reading is all this does; Terraform
alone writes the state.
"""

from __future__ import annotations

import json
import time
from typing import Any

from swarmforge.aws_api import client
from swarmforge.errors import SwarmforgeError
from swarmforge.settings import Settings

LOCAL_STATE = "terraform/terraform.tfstate"  # under the cluster's dir, without a state bucket
READ_ATTEMPTS = 50
READ_PAUSE = 0.1  # seconds: Terraform writes a state in far less


class StateBeingWritten(SwarmforgeError):
    """The local state file never read whole: Terraform kept writing it."""

    exit_code = 4  # as BusyError: another run holds the cluster


def state_document(settings: Settings) -> dict[str, Any]:
    """The cluster's Terraform state (its JSON); {} when there is none yet."""
    text = _s3_state(settings) if settings.state_bucket else _local_state(settings)
    document: dict[str, Any] = json.loads(text) if text else {}
    return document


def state_outputs(settings: Settings) -> dict[str, Any]:
    """{output name: value} of the cluster's state; {} when there is no state yet."""
    outputs = state_document(settings).get("outputs") or {}
    return {name: output.get("value") for name, output in outputs.items()}


def _local_state(settings: Settings) -> str:
    """The state file's text, whole: Terraform rewrites it in place (truncated, then
    written), so a reader beside a running apply may catch it empty or half written;
    it reads again until the text is whole, for up to a few seconds."""
    path = settings.cluster_dir / LOCAL_STATE
    for _ in range(READ_ATTEMPTS):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return ""
        if _whole(text):
            return text
        time.sleep(READ_PAUSE)
    raise StateBeingWritten(f"cluster {settings.cluster!r} is being changed: its Terraform state "
                            f"{path} was being written each time it was read; run the same "
                            "command again once that is done")


def _whole(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _s3_state(settings: Settings) -> str:
    from botocore.exceptions import ClientError  # only with a state bucket, as boto3 is

    s3 = client("s3", settings.state_region or settings.region, settings.state_endpoint)
    try:
        body = s3.get_object(Bucket=settings.state_bucket, Key=settings.state_key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return ""
        raise
    return str(body.decode())
