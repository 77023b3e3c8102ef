"""The AWS model (benchmarks/aws_model.py) runs the pipeline's own apply and roll, and its
numbers move the way its limits say they must. No time is asserted: the model's clock
is virtual, and these compare its runs with each other."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import aws_model as model  # a script's module, found on the benchmarks path


def test_formation_is_no_slower_with_more_parallelism() -> None:
    seconds = [model.form(3, 25, p)[0].seconds for p in (1, 5, 10, 30)]
    assert seconds == sorted(seconds, reverse=True)
    assert seconds[0] > seconds[-1]  # one instance at a time is much slower than ten


def test_a_bigger_cluster_takes_longer_and_meets_ec2s_throttling() -> None:
    small, _, _ = model.form(3, 2, 10)
    big, _, world = model.form(7, 500, 100)
    assert big.seconds > small.seconds
    assert small.throttled == {}
    assert sum(big.throttled.values()) > 0  # and, retried, every call still got through
    assert sum(1 for m in world.machines.values() if m.state(world.now) == "running") == 507
    assert len(world.swarm.members) == 507


def test_a_roll_puts_every_node_on_the_new_image_one_at_a_time() -> None:
    run = model.roll_sample(3, 2, 10, batches=2, repin_fix=True)
    assert run.extra["sampled_workers"] == 2
    replacements = [title for title, _ in run.steps if title.startswith("[1/")]
    assert len(replacements) == 5  # two workers, then three managers, each on its own
    assert run.extra["per_manager"] > 0 and run.extra["per_worker"] > 0


def test_a_burst_past_the_bucket_is_throttled_and_answered_as_it_refills() -> None:
    world = model.World(model.Latencies())
    capacity, refill = model.NON_MUTATING
    burst = capacity + 50
    engine = model.Engine(world)
    for _ in range(burst):
        engine.start(engine.call("DescribeVolumes"))
    engine.run()
    assert world.calls["DescribeVolumes"] == burst  # every one answered in the end
    assert world.throttled["DescribeVolumes"] >= burst - capacity
    assert world.now >= (burst - capacity) / refill  # no faster than the bucket refills
