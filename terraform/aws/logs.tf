################################################################################
# Container logs (container_logs = "cloudwatch"): one log group per cluster,
# which every node's Docker daemon writes to through the awslogs driver, one
# stream per container. The driver is set in daemon.json by the swarm step
# (scripts/swarm-node.sh), not baked into the AMI: the group's name is the
# cluster's. A node takes the setting when it is made; running nodes keep
# theirs until `invoke roll` replaces them (a daemon restart on every node at
# once is what a change must never cause).
################################################################################

locals {
  cloudwatch_logs = var.container_logs == "cloudwatch"
  log_group_name  = "/swarmforge/${var.cluster_name}/containers"
}

resource "aws_cloudwatch_log_group" "containers" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every group at rest; a customer-managed key (billed per month) is var.log_kms_key_id.
  #checkov:skip=CKV_AWS_338:How long logs are kept is a cost the operator chooses: var.log_retention_days (default 30).
  count = local.cloudwatch_logs ? 1 : 0

  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_id

  tags = merge(var.tags, { Name = "${var.cluster_name}-containers" })
}
