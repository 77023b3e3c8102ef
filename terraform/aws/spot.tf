################################################################################
# Spot workers (optional): worker_spot = true launches the workers as one-time
# spot instances that EC2 terminates when it takes the capacity back, after a
# two-minute notice. The AMI carries two systemd units (scripts/systemd), which
# the swarm step enables (main.tf, node_settings: SWARM_NODE_SPOT):
#   - on a worker, swarmforge-spot-notice polls the instance metadata for the
#     notice; on one, it announces its exit through the swarm itself (an engine
#     label of its dockerd), waits for its tasks to be drained, and leaves;
#   - on every manager, swarmforge-spot-reaper (only the leader acts) drains an
#     announced worker and removes its entry once it shows Down.
# No AWS API and no IAM right is needed for it: the worker holds no credential
# beyond its own swarm membership (docs/swarm.md, "Spot workers").
#
# Only the workers: a manager taken back would cost the raft a member at EC2's
# whim. A terminated worker is recreated, on spot again, by the next apply.
# The variables, worker_spot and worker_spot_max_price, are in variables.tf
# (where every validation runs without the AWS provider).
################################################################################

locals {
  # What aws_instance.swarm_worker's instance_market_options block is made from:
  # one entry with spot workers, none without.
  worker_market = var.worker_spot ? [{
    spot_instance_type             = "one-time"
    instance_interruption_behavior = "terminate"
    max_price                      = var.worker_spot_max_price
  }] : []
}
