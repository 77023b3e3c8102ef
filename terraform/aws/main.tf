provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { Cluster = var.cluster_name })
  }
}

locals {
  # A manager is named and placed by its slot, not its index: while one is
  # replaced, the new manager (the twin slot, s+8 or s-8) runs beside the old
  # one, in the same AZ.
  manager_slots   = [for i in range(var.swarm_managers) : length(var.swarm_manager_slots) > 0 ? var.swarm_manager_slots[i] : i]
  manager_names   = [for s in local.manager_slots : "${var.cluster_name}-manager-${s}"]
  manager_subnets = [for s in local.manager_slots : length(local.subnet_ids) > 0 ? local.subnet_ids[(s % 8) % length(local.subnet_ids)] : null]
  worker_names    = [for i in range(var.swarm_workers) : "${var.cluster_name}-worker-${i}"]

  # public_ports with published_ports in the same shape: each TCP, from allowed_ingress_cidrs.
  public_ports = concat(var.public_ports, [
    for port in var.published_ports : { port = port, protocol = "tcp", cidr_blocks = var.allowed_ingress_cidrs }
  ])

  # Round-robin over the subnets (one per AZ with the default VPC), so that the
  # managers, which must keep a majority, never share an AZ while there are
  # AZs to spare.
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.default[0].ids)
  # Workers: their own (private) subnets when given, else the managers'.
  worker_subnets = length(var.worker_subnet_ids) > 0 ? var.worker_subnet_ids : local.subnet_ids

  manager_instance_type = coalesce(var.swarm_manager_instance_type, var.swarm_instance_type)
  worker_instance_type  = coalesce(var.swarm_worker_instance_type, var.swarm_instance_type)
  instance_types        = toset([local.manager_instance_type, local.worker_instance_type])

  node_script = "${path.module}/scripts/swarm-node.sh"
  private_key = file(var.ssh_private_key_path)

  # The join request holds a token, so it and every script Terraform uploads
  # live in a directory only ssh_user can read, never in the shared /tmp.
  home_dir      = var.ssh_user == "root" ? "/root" : "/home/${var.ssh_user}"
  provision_dir = "${local.home_dir}/.swarmforge-provision"
  script_path   = "${local.provision_dir}/tf-%RAND%.sh"
  make_dir      = "install -d -m 0700 ${local.provision_dir}"
  join_file     = "${local.provision_dir}/join.json"
  # A leading space with no settings: nothing to the shell.
  run_node = "${local.node_settings} bash ${local.provision_dir}/swarm-node.sh"

  # What the swarm step tells swarm-node.sh about this cluster's optional parts
  # (never a secret): where containers log (logs.tf) and the shared file system
  # to mount (efs.tf). References, so the step waits for the group and the file
  # system; it waits for the mount targets and the node role's policies too
  # (join.tf's depends_on). Empty with both off, as in the sandbox.
  node_settings = join(" ", concat(
    local.cloudwatch_logs ? ["SWARM_NODE_LOG_GROUP=${aws_cloudwatch_log_group.containers[0].name}", "SWARM_NODE_LOG_REGION=${var.region}"] : [],
    var.efs ? ["SWARM_NODE_EFS=${aws_efs_file_system.shared[0].dns_name}"] : [],
    var.worker_spot ? ["SWARM_NODE_SPOT=1"] : [], # spot.tf
  ))

  join_address = var.swarm_manager_ip == "" ? [] : ["${var.swarm_manager_ip}:2377"]

  # A variable, not aws_instance.swarm_manager[0]: that reference would make
  # every worker wait for every manager to be created and joined.
  bastion_host = var.worker_public_ip ? null : var.ssh_bastion_host

  # Every node joins through one step (null_resource.swarm_join), keyed by its
  # name. Phase 1 (swarm_init) has the first manager's step only, which runs
  # `docker swarm init`; phase 2 adds every other node's, which joins.
  nodes = merge(
    { for i, name in local.manager_names : name => { role = "manager", index = i } },
    { for i, name in local.worker_names : name => { role = "worker", index = i } },
  )
  bootstrap = local.manager_names[0]
  all_steps = var.swarm_init ? { (local.bootstrap) = local.nodes[local.bootstrap] } : local.nodes
  # A node's step waits until its host key is pinned (read from its console by
  # swarmforge after the instance exists): nothing is sent to an unverified host.
  join_steps = { for name, node in local.all_steps : name => node if contains(keys(var.swarm_host_keys), name) }
}

# A new AMI or a new token must never replace a running node behind the
# operator's back: nodes are replaced one at a time by `invoke replace-node`
# and `invoke roll` (terraform apply -replace), which drain them first.
