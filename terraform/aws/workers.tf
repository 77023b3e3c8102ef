# Worker i. It carries no provisioner: the swarm step (join.tf) joins it
# through swarm_manager_ip with the worker token; private workers
# (worker_public_ip = false) are reached through ssh_bastion_host, a manager,
# and, in worker_subnet_ids, reach the internet through a NAT gateway
# (create_nat_gateway, network.tf, or the operator's own).

resource "aws_instance" "swarm_worker" {
  #checkov:skip=CKV_AWS_88:Workers get a public address only when var.worker_public_ip is true (SSH limited to allowed_ssh_cidrs).
  #checkov:skip=CKV_AWS_126:Detailed monitoring is billed per instance; enable it with var.detailed_monitoring.
  #checkov:skip=CKV_AWS_135:Current-generation types are EBS-optimized by default; forcing the flag breaks types without it.
  count = var.swarm_workers

  ami                         = var.swarm_ami_id
  instance_type               = local.worker_instance_type
  key_name                    = var.key_name
  subnet_id                   = local.worker_subnets[count.index % length(local.worker_subnets)]
  vpc_security_group_ids      = [aws_security_group.swarm.id]
  associate_public_ip_address = var.worker_public_ip
  iam_instance_profile        = local.node_profile
  monitoring                  = var.detailed_monitoring

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # Spot with worker_spot (spot.tf): one-time, terminated on interruption.
  dynamic "instance_market_options" {
    for_each = local.worker_market
    content {
      market_type = "spot"
      spot_options {
        spot_instance_type             = instance_market_options.value.spot_instance_type
        instance_interruption_behavior = instance_market_options.value.instance_interruption_behavior
        max_price                      = instance_market_options.value.max_price
      }
    }
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_id
    delete_on_termination = true
  }

  tags        = merge(var.tags, { Name = local.worker_names[count.index], Cluster = var.cluster_name, Role = "worker", Index = tostring(count.index) })
  volume_tags = merge(var.tags, { Name = local.worker_names[count.index], Cluster = var.cluster_name, Role = "worker" })

  lifecycle {
    # See main.tf: replacements are explicit and one node at a time.
    # The instance type, the root volume's KMS key and the public address
    # too, and the market (worker_spot): changing them would stop (type) or
    # replace (key, address: the worker_public_ip setting; market) every worker
    # at once. New nodes take them;
    # `invoke status` shows a node of another type, address or key (drift),
    # which `invoke roll` replaces, one node at a time (workers of the other
    # market: `invoke roll --all`).
    ignore_changes = [ami, user_data, subnet_id, instance_type, root_block_device[0].kms_key_id, associate_public_ip_address, instance_market_options]

    precondition {
      condition     = length(local.worker_subnets) > 0
      error_message = "No subnet to run in: the default VPC has no default subnet in an AZ offering ${join(" and ", sort(local.instance_types))}. Set vpc_id and subnet_ids."
    }
  }
}
