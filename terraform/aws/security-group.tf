resource "aws_security_group" "swarm" {
  name_prefix = "${var.cluster_name}-swarm-"
  description = "Docker Swarm nodes of cluster ${var.cluster_name}"
  vpc_id      = data.aws_vpc.selected.id

  tags = merge(var.tags, { Name = "${var.cluster_name}-swarm" })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # Swarm traffic flows between members of the group only (self rules).
  swarm_rules = {
    cluster_management = { protocol = "tcp", port = 2377, description = "Swarm cluster management" }
    gossip_tcp         = { protocol = "tcp", port = 7946, description = "Swarm node gossip (tcp)" }
    gossip_udp         = { protocol = "udp", port = 7946, description = "Swarm node gossip (udp)" }
    overlay_vxlan      = { protocol = "udp", port = 4789, description = "Overlay network traffic (VXLAN)" }
    overlay_esp        = { protocol = "50", port = null, description = "Encrypted overlay networks (IPsec ESP)" }
  }

  # Private workers are reached over SSH through a manager (ssh_bastion_host).
  member_ssh = var.worker_public_ip ? {} : {
    ssh = { protocol = "tcp", port = 22, description = "SSH from a bastion manager to private nodes" }
  }

  public_rules = merge([
    for p in local.public_ports : {
      for cidr in p.cidr_blocks : "${p.protocol}-${p.port}-${cidr}" => merge(p, { cidr = cidr })
    }
  ]...)
}

resource "aws_vpc_security_group_ingress_rule" "swarm" {
  for_each = merge(local.swarm_rules, local.member_ssh)

  security_group_id            = aws_security_group.swarm.id
  description                  = each.value.description
  referenced_security_group_id = aws_security_group.swarm.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.allowed_ssh_cidrs)

  security_group_id = aws_security_group.swarm.id
  description       = "SSH from an operator network"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}

resource "aws_vpc_security_group_ingress_rule" "public" {
  for_each = local.public_rules

  security_group_id = aws_security_group.swarm.id
  description       = "Published swarm service ${each.value.port}/${each.value.protocol}"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.swarm.id
  description       = "Outbound to anywhere: image registries, OS updates"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}
