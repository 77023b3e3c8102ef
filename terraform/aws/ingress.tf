################################################################################
# Ingress (ingress_nlb, on by default): a Network Load Balancer in front of
# every node for the TCP ports in public_ports and published_ports, so that a service published on
# the swarm's routing mesh (which answers on every node) is reachable at one
# DNS name, the ingress_dns_name output. One listener and one target group per
# port, every manager and worker a target, a TCP health check on the port
# itself: a node that does not answer (not yet joined, drained of its mesh,
# gone) takes no traffic.
#
# The NLB has a security group of its own: clients reach it from each port's
# cidr_blocks, it reaches the nodes on those ports, and the nodes let it in.
# The nodes keep their public_ports rules too (security-group.tf), so clients
# that reach a node directly keep working. UDP ports are left out: an NLB
# checks a UDP target's health over TCP, which a UDP-only service never answers.
#
# The graph: the attachments reference the instances, never the other way, so
# an instance never waits for the NLB, and a replaced instance (a new id) gets a
# new attachment, the old one deregistered before the old instance goes.
################################################################################

locals {
  ingress_ports = var.ingress_nlb ? sort(distinct([for p in local.public_ports : tostring(p.port) if p.protocol == "tcp"])) : []
  ingress       = length(local.ingress_ports) > 0

  # "<port>-<cidr>" => rule: who may reach each port, as public_ports says.
  ingress_clients = merge([
    for p in local.public_ports : {
      for cidr in p.cidr_blocks : "${p.port}-${cidr}" => { port = p.port, cidr = cidr }
    } if contains(local.ingress_ports, tostring(p.port)) && p.protocol == "tcp"
  ]...)

  # "<port>/<node name>" => the node and the port: keys known at plan (from the
  # variables), so adding a node or a port never needs a -target.
  ingress_targets = merge([
    for port in local.ingress_ports : {
      for name, node in local.nodes : "${port}/${name}" => merge(node, { port = port })
    }
  ]...)
}

resource "aws_security_group" "ingress" {
  count = local.ingress ? 1 : 0

  name_prefix = "${var.cluster_name}-ingress-"
  description = "Ingress load balancer of cluster ${var.cluster_name}"
  vpc_id      = data.aws_vpc.selected.id

  tags = merge(var.tags, { Name = "${var.cluster_name}-ingress" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ingress_clients" {
  for_each = local.ingress_clients

  security_group_id = aws_security_group.ingress[0].id
  description       = "Clients of published swarm service ${each.value.port}/tcp"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "ingress_to_nodes" {
  for_each = toset(local.ingress_ports)

  security_group_id            = aws_security_group.ingress[0].id
  description                  = "To the swarm nodes: published service ${each.key}/tcp and its health check"
  referenced_security_group_id = aws_security_group.swarm.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_vpc_security_group_ingress_rule" "nodes_from_ingress" {
  for_each = toset(local.ingress_ports)

  security_group_id            = aws_security_group.swarm.id
  description                  = "From the ingress load balancer: published service ${each.key}/tcp"
  referenced_security_group_id = aws_security_group.ingress[0].id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_lb" "ingress" {
  #checkov:skip=CKV_AWS_91:Access logs need an S3 bucket with a policy for the ELB service, billed per GB: not a default of a cluster that may serve anything.
  #checkov:skip=CKV_AWS_150:The NLB holds no data and `invoke destroy` must remove everything it made; deletion protection would stop it.
  count = local.ingress ? 1 : 0

  name                             = "${var.cluster_name}-ingress"
  internal                         = false
  load_balancer_type               = "network"
  subnets                          = local.subnet_ids
  security_groups                  = [aws_security_group.ingress[0].id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = false

  tags = merge(var.tags, { Name = "${var.cluster_name}-ingress" })
}

# No name: the provider picks a unique one, so a replaced group (a new VPC) can
# be made before the old one, which its listener still uses, is destroyed.
resource "aws_lb_target_group" "ingress" {
  for_each = toset(local.ingress_ports)

  port                 = tonumber(each.key)
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = data.aws_vpc.selected.id
  deregistration_delay = 30

  health_check {
    enabled             = true
    protocol            = "TCP"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = merge(var.tags, { Name = "${var.cluster_name}-ingress-${each.key}" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "ingress" {
  for_each = toset(local.ingress_ports)

  load_balancer_arn = aws_lb.ingress[0].arn
  port              = tonumber(each.key)
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ingress[each.key].arn
  }

  tags = merge(var.tags, { Name = "${var.cluster_name}-ingress-${each.key}" })
}

resource "aws_lb_target_group_attachment" "ingress" {
  for_each = local.ingress_targets

  target_group_arn = aws_lb_target_group.ingress[each.value.port].arn
  target_id        = each.value.role == "manager" ? aws_instance.swarm_manager[each.value.index].id : aws_instance.swarm_worker[each.value.index].id
  port             = tonumber(each.value.port)
}
