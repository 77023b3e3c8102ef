# Without vpc_id and subnet_ids the cluster runs in the region's default VPC,
# on its default subnets (one per AZ) in the AZs that offer the instance type.

data "aws_vpc" "selected" {
  id      = var.vpc_id
  default = var.vpc_id == null
}

data "aws_ec2_instance_type_offerings" "swarm" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.swarm_instance_type]
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
    values = data.aws_ec2_instance_type_offerings.swarm.locations
  }
}
