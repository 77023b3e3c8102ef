locals {
  # One timestamp for the name and the tags; a unique name per bake means no
  # force_deregister: older AMIs stay for rollback until swarmforge prunes them.
  build_time = formatdate("YYYYMMDD-hhmmss", timestamp())
  ami_name   = "swarmforge-${var.cluster}-docker-${local.build_time}"

  # The same tags on the AMI and on its snapshots, so pruning finds both.
  # {{ .SourceAMI }} and friends are filled in by the amazon builder at tag time.
  # Never {{ build ... }} or build.*: in a builder they are evaluated after the
  # AMI is registered, too late, and their failure deregisters the finished AMI.
  image_tags = {
    Name                    = local.ami_name
    "swarmforge:cluster"    = var.cluster
    "swarmforge:git-commit" = var.git_commit
    "swarmforge:docker"     = var.docker_version_spec
    "swarmforge:built-at"   = local.build_time
    "swarmforge:base-ami"   = "{{ .SourceAMI }}"
    "swarmforge:base-name"  = "{{ .SourceAMIName }}"
    "swarmforge:run-id"     = var.swarmforge_run_id
  }
}

source "amazon-ebs" "ubuntu_docker" {
  region        = var.region
  ami_regions   = var.ami_regions
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = local.ami_name

  # SSH into the build instance from this machine's public address only, not the
  # whole internet (the amazon plugin asks checkip.amazonaws.com for it).
  temporary_security_group_source_public_ip = true

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd*/ubuntu-${var.ubuntu_release}-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [var.ubuntu_owner] # Canonical, in the region's partition
    most_recent = true
  }

  # IMDSv2 only, on the build instance and on every instance launched from the AMI.
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 16
    volume_type           = "gp3"
    iops                  = 3000 # gp3 baseline; Packer 1.6 has no default for these
    throughput            = 125
    encrypted             = true
    delete_on_termination = true
  }

  tags          = local.image_tags
  snapshot_tags = local.image_tags
  run_tags = {
    Name                 = "swarmforge-bake-${var.cluster}"
    "swarmforge:cluster" = var.cluster
  }
}
