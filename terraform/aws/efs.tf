################################################################################
# Shared volumes (efs = true): one encrypted EFS file system, a mount target in
# each of efs_subnet_ids (default: subnet_ids, one per AZ), reachable over NFS
# from the nodes' security group only. The swarm step mounts it at /mnt/efs on
# every node it makes (scripts/swarm-node.sh: fstab, _netdev), so services
# bind-mount shared data from there. A node takes it when it is made, as with
# container_logs.
#
# Nothing here references a node: turning it on or off never touches an
# instance. Destroying the cluster destroys the file system and its data.
################################################################################

locals {
  efs_subnets = length(var.efs_subnet_ids) > 0 ? var.efs_subnet_ids : local.subnet_ids
}

resource "aws_efs_file_system" "shared" {
  #checkov:skip=CKV_AWS_184:Encrypted at rest always; with the AWS-managed key unless var.efs_kms_key_id names a customer-managed one (billed per month).
  count = var.efs ? 1 : 0

  creation_token = "swarmforge-${var.cluster_name}-shared"
  encrypted      = true
  kms_key_id     = var.efs_kms_key_id

  tags = merge(var.tags, { Name = "${var.cluster_name}-shared" })
}

resource "aws_security_group" "efs" {
  count = var.efs ? 1 : 0

  name_prefix = "${var.cluster_name}-efs-"
  description = "EFS mount targets of cluster ${var.cluster_name}: NFS from its nodes"
  vpc_id      = data.aws_vpc.selected.id

  tags = merge(var.tags, { Name = "${var.cluster_name}-efs" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_nodes" {
  count = var.efs ? 1 : 0

  security_group_id            = aws_security_group.efs[0].id
  description                  = "NFS from the swarm nodes"
  referenced_security_group_id = aws_security_group.swarm.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

# By subnet id, not index: a subnet added later adds its mount target and
# leaves the others. EFS allows one mount target per AZ.
resource "aws_efs_mount_target" "shared" {
  for_each = toset(var.efs ? local.efs_subnets : [])

  file_system_id  = aws_efs_file_system.shared[0].id
  subnet_id       = each.value
  security_groups = [aws_security_group.efs[0].id]
}
