# Manager i, named and placed by its slot. It carries no provisioner: the
# swarm step (join.tf) makes it the first manager or joins it, once it exists
# and the security group lets SSH in.

resource "aws_instance" "swarm_manager" {
  #checkov:skip=CKV_AWS_88:Managers need a public address for SSH provisioning (restricted to allowed_ssh_cidrs) and as the bastion for private workers.
  #checkov:skip=CKV_AWS_126:Detailed monitoring is billed per instance; enable it with var.detailed_monitoring.
  #checkov:skip=CKV_AWS_135:Current-generation types are EBS-optimized by default; forcing the flag breaks types without it.
  count = var.swarm_managers

  ami                         = var.swarm_ami_id
  instance_type               = local.manager_instance_type
  key_name                    = var.key_name
  subnet_id                   = local.manager_subnets[count.index]
  vpc_security_group_ids      = [aws_security_group.swarm.id]
  associate_public_ip_address = true
  iam_instance_profile        = local.node_profile
  monitoring                  = var.detailed_monitoring

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_id
    delete_on_termination = true
  }

  tags        = merge(var.tags, { Name = local.manager_names[count.index], Cluster = var.cluster_name, Role = "manager", Slot = tostring(local.manager_slots[count.index]) })
  volume_tags = merge(var.tags, { Name = local.manager_names[count.index], Cluster = var.cluster_name, Role = "manager" })

  lifecycle {
    # See main.tf: replacements are explicit and one node at a time. subnet_id
    # too, so that a new default subnet appearing does not reshuffle the nodes.
    # The instance type and the root volume's KMS key too: changing them
    # would stop (type) or replace (key) every node at once. New nodes take
    # them; `invoke status` shows a node of another type or key (drift),
    # which `invoke roll` replaces, one node at a time.
    ignore_changes = [ami, user_data, subnet_id, instance_type, root_block_device[0].kms_key_id]

    precondition {
      condition     = length(local.subnet_ids) > 0
      error_message = "No subnet to run in: the default VPC has no default subnet in an AZ offering ${join(" and ", sort(local.instance_types))}. Set vpc_id and subnet_ids."
    }
  }
}
