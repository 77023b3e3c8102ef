################################################################################
# The nodes' AWS identity, made here unless iam_instance_profile names the
# operator's own: a role EC2 hands the nodes, with ECR read-only access (the
# AMI's credential helper, scripts/install-aws-helpers.sh, turns it into pull
# credentials: `docker service create <account>.dkr.ecr.<region>.amazonaws.com/
# app:1 --with-registry-auth` needs no `docker login`) and, with
# container_logs = "cloudwatch", the right to write the cluster's log group,
# and nothing else.
#
# The role and its profile live under the path /swarmforge/<cluster>/, which is
# what the apply credentials' IAM statements are scoped to (docs/iam).
################################################################################

data "aws_partition" "current" {}

locals {
  create_node_role = var.iam_instance_profile == null
  # What every node runs with. A name, not the resource: an instance depends on
  # the profile only, never on the NLB, the log group or the file system.
  node_profile   = local.create_node_role ? aws_iam_instance_profile.nodes[0].name : var.iam_instance_profile
  node_role_path = "/swarmforge/${var.cluster_name}/"
  ecr_read_only  = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
}

data "aws_iam_policy_document" "node_assume_role" {
  statement {
    sid     = "Ec2RunsTheNodes"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.${data.aws_partition.current.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "nodes" {
  count = local.create_node_role ? 1 : 0

  name_prefix        = "${var.cluster_name}-node-"
  path               = local.node_role_path
  description        = "Docker Swarm nodes of cluster ${var.cluster_name}: ECR pulls, container logs"
  assume_role_policy = data.aws_iam_policy_document.node_assume_role.json

  tags = merge(var.tags, { Name = "${var.cluster_name}-node" })
}

resource "aws_iam_instance_profile" "nodes" {
  count = local.create_node_role ? 1 : 0

  name_prefix = "${var.cluster_name}-node-"
  path        = local.node_role_path
  role        = aws_iam_role.nodes[0].name

  tags = merge(var.tags, { Name = "${var.cluster_name}-node" })
}

# AWS's own read-only policy: pull tokens and image layers, from any repository
# the account's policies let it read (a repository policy can narrow that).
resource "aws_iam_role_policy_attachment" "ecr_read_only" {
  count = local.create_node_role ? 1 : 0

  role       = aws_iam_role.nodes[0].name
  policy_arn = local.ecr_read_only
}

# Docker's awslogs driver makes one stream per container and writes to it; the
# group itself is made here (logs.tf), so the nodes may not create groups.
data "aws_iam_policy_document" "node_logs" {
  count = local.cloudwatch_logs ? 1 : 0

  statement {
    sid       = "WriteContainerLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.containers[0].arn, "${aws_cloudwatch_log_group.containers[0].arn}:log-stream:*"]
  }
}

resource "aws_iam_role_policy" "node_logs" {
  count = local.create_node_role && local.cloudwatch_logs ? 1 : 0

  name   = "container-logs"
  role   = aws_iam_role.nodes[0].id
  policy = data.aws_iam_policy_document.node_logs[0].json
}
