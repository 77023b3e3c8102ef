"""AWS throttles and settles late: the clients' retries, against moto's server, and Patience.

moto never throttles, so ``Intercept`` answers some attempts of one operation the
way AWS would (botocore's ``before-send`` event: the handler's response stands in
for the HTTP exchange) and lets the rest through to moto. Everything after that
answer is real: botocore parses it, its standard retry mode decides, backs off and
tries again. test_amis.py uses it too, for EC2's and SSM's late answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import botocore.endpoint
import pytest
from botocore import xform_name
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError

from swarmforge.targets.aws import MAX_RETRIES, client
from swarmforge.targets.aws.amis import Patience

REGION = "eu-west-1"

Answer = Callable[[AWSPreparedRequest], AWSResponse]


class Intercept:
    """Answers the first ``times`` attempts of ``operation`` on ``aws`` (a boto3 client)
    with ``answer``, then lets the attempts through to the server; counts them all."""

    def __init__(self, aws: Any, operation: str, answer: Answer, times: float = math.inf) -> None:
        self.answer = answer
        self.times = times
        self.attempts = 0
        service = aws.meta.service_model.service_id.hyphenize()
        aws.meta.events.register(f"before-send.{service}.{operation}", self)

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        self.attempts += 1
        return self.answer(request) if self.attempts <= self.times else None


class _Body:
    """The raw body AWSResponse reads its content from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def _headers(pairs: dict[str, str]) -> HTTPHeaders:
    headers = HTTPHeaders()
    for name, value in pairs.items():
        headers[name] = value
    return headers


def ec2_error(code: str, message: str = "refused by the test") -> Answer:
    """EC2's (query protocol) error answer: HTTP 400 and an XML body."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>test</RequestID></Response>")
    return lambda request: AWSResponse(request.url, 400, _headers({"Content-Type": "text/xml"}),
                                       _Body(body.encode()))


def json_answer(status: int, document: dict[str, Any]) -> Answer:
    """SSM's (JSON protocol) answer: ``document`` with HTTP ``status``."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "test"}
    return lambda request: AWSResponse(request.url, status, _headers(headers),
                                       _Body(json.dumps(document).encode()))


def json_error(code: str, message: str = "refused by the test") -> Answer:
    return json_answer(400, {"__type": code, "message": message})


# --- the clients' own retries ---------------------------------------------------------------


@pytest.mark.parametrize("service", ["ec2", "ssm", "s3", "sts", "dynamodb"])
def test_every_client_retries_in_standard_mode(service: str) -> None:
    retries = client(service, REGION).meta.config.retries

    # botocore turns Config's max_attempts (retries) into total_max_attempts (all attempts).
    assert retries == {"mode": "standard", "total_max_attempts": MAX_RETRIES + 1}


@pytest.mark.parametrize(("service", "operation", "throttled"), [
    ("ec2", "DescribeRegions", ec2_error("RequestLimitExceeded", "Request limit exceeded.")),
    ("ssm", "DescribeParameters", json_error("ThrottlingException", "Rate exceeded")),
])
def test_a_throttled_call_is_retried_until_it_gets_through(
    endpoint: str, service: str, operation: str, throttled: Answer
) -> None:
    aws = client(service, REGION, endpoint)
    throttle = Intercept(aws, operation, throttled, times=2)

    answer = getattr(aws, xform_name(operation))()  # real back-off: up to 1 s, then up to 2 s

    assert throttle.attempts == 3  # two throttled, then moto's answer
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2


def test_throttling_past_the_retries_fails_after_bounded_back_off(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = client("ec2", REGION, endpoint)
    throttle = Intercept(ec2, "DescribeRegions", ec2_error("RequestLimitExceeded"))
    slept: list[float] = []
    # botocore's own back-off, recorded instead of slept (about a minute otherwise); the
    # delays are still botocore's, computed by its standard mode.
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=slept.append))

    with pytest.raises(ClientError) as refused:
        ec2.describe_regions()

    assert refused.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert throttle.attempts == MAX_RETRIES + 1
    assert len(slept) == MAX_RETRIES
    # Exponential with full jitter: the i-th wait is at most 2**i seconds (1 s base for
    # throttling), capped at 20 s.
    assert all(0 <= wait <= min(20, 2**i) for i, wait in enumerate(slept))
    assert max(slept) > 1  # the ceilings really grew


# --- Patience: waiting for AWS to settle -------------------------------------------------------


class Clock:
    """An injected sleep: records the waits, sleeps none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def answers(*said: bool) -> Callable[[], bool]:
    """A ``done`` that says ``said`` in turn, then False for good."""
    left = iter(said)
    return lambda: next(left, False)


def test_patience_asks_once_when_done_already() -> None:
    clock = Clock()

    assert Patience(sleep=clock.sleep).until(answers(True))
    assert clock.waits == []


def test_patience_backs_off_exponentially_with_jitter_until_done() -> None:
    clock = Clock()
    patience = Patience(budget=1000, first=1, cap=8, sleep=clock.sleep)

    assert patience.until(answers(*[False] * 6, True))

    ceilings = [1, 2, 4, 8, 8, 8]
    assert len(clock.waits) == len(ceilings)
    assert all(c / 2 <= wait <= c for wait, c in zip(clock.waits, ceilings, strict=True))
    assert len(set(clock.waits)) == len(clock.waits)  # jittered, not in step


def test_patience_gives_up_when_its_budget_is_slept() -> None:
    clock = Clock()
    asked = 0

    def never() -> bool:
        nonlocal asked
        asked += 1
        return False

    assert not Patience(budget=30, first=1, cap=8, sleep=clock.sleep).until(never)
    assert sum(clock.waits) == pytest.approx(30)  # the last wait is cut to what is left
    assert asked == len(clock.waits) + 1  # asked once more after the last wait
