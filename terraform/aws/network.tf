# Without vpc_id and subnet_ids the cluster runs in the region's default VPC,
# on its default subnets (one per AZ) in the AZs that offer the instance types.

data "aws_vpc" "selected" {
  id      = var.vpc_id
  default = var.vpc_id == null
}

# One lookup per instance type: a filter with several values would list the AZs
# that offer any of them, and every node must find its type in its AZ.
data "aws_ec2_instance_type_offerings" "swarm" {
  for_each = local.instance_types

  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [each.key]
  }
}

data "aws_subnets" "default" {
  count = length(var.subnet_ids) == 0 ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.selected.id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }

  filter {
    name   = "availability-zone"
    values = setintersection([for offered in data.aws_ec2_instance_type_offerings.swarm : offered.locations]...)
  }
}

################################################################################
# Private workers' way out (create_nat_gateway): one NAT gateway, with an
# Elastic IP, in the first of subnet_ids (a public subnet: the managers' are,
# their default route leads to the VPC's internet gateway), and a default route
# through it for the workers' private subnets: in a route table made here and
# associated with each of worker_subnet_ids, or, with private_route_table_id,
# in that table of the operator's (whose associations are the operator's too).
#
# One gateway, not one per AZ: if its AZ fails, workers elsewhere lose their
# way out (running services keep running; pulls and updates wait), for a third
# of the cost of three. Nothing here references a node, and no node references
# it: a change to it never touches an instance.
################################################################################

resource "aws_eip" "nat" {
  count = var.create_nat_gateway ? 1 : 0

  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.cluster_name}-nat" })
}

resource "aws_nat_gateway" "workers" {
  count = var.create_nat_gateway ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = local.subnet_ids[0]
  tags          = merge(var.tags, { Name = "${var.cluster_name}-nat" })
}

resource "aws_route_table" "workers" {
  count = var.create_nat_gateway && var.private_route_table_id == null ? 1 : 0

  vpc_id = data.aws_vpc.selected.id
  tags   = merge(var.tags, { Name = "${var.cluster_name}-workers" })
}

resource "aws_route" "workers_egress" {
  count = var.create_nat_gateway ? 1 : 0

  route_table_id         = coalesce(var.private_route_table_id, one(aws_route_table.workers[*].id))
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.workers[0].id
}

resource "aws_route_table_association" "workers" {
  for_each = toset(var.create_nat_gateway && var.private_route_table_id == null ? var.worker_subnet_ids : [])

  subnet_id      = each.value
  route_table_id = aws_route_table.workers[0].id
}
