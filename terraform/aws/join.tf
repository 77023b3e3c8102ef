# The one step that makes a node a swarm member: `docker swarm init` on the
# first manager in phase 1, a join everywhere else in phase 2 (the same step as
# terraform/local). Triggered by the instance id, so a replaced instance joins
# again, and an instance that runs is never touched again.

resource "null_resource" "swarm_join" {
  for_each = local.join_steps

  triggers = {
    instance_id = each.value.role == "manager" ? aws_instance.swarm_manager[each.value.index].id : aws_instance.swarm_worker[each.value.index].id
    role        = each.value.role
    private_ip  = each.value.role == "manager" ? aws_instance.swarm_manager[each.value.index].private_ip : aws_instance.swarm_worker[each.value.index].private_ip
    ssh_host    = each.value.role == "manager" ? aws_instance.swarm_manager[each.value.index].public_ip : (var.worker_public_ip ? aws_instance.swarm_worker[each.value.index].public_ip : aws_instance.swarm_worker[each.value.index].private_ip)
  }

  # SSH reaches the node only once these rules exist: they are separate
  # resources that the instance does not reference.
  depends_on = [
    aws_vpc_security_group_ingress_rule.ssh,
    aws_vpc_security_group_ingress_rule.swarm,
    # What the node script's settings (local.node_settings) need before the
    # node runs containers: a mountable file system, and the role's rights
    # to pull from ECR and to write its logs.
    aws_efs_mount_target.shared,
    aws_vpc_security_group_ingress_rule.efs_from_nodes,
    aws_iam_role_policy_attachment.ecr_read_only,
    aws_iam_role_policy.node_logs,
  ]

  # Here, not as a validation of ssh_bastion_host: Terraform checks a
  # precondition only for a step it creates or keeps, never for one it
  # destroys, so `destroy` works with no manager running to be the bastion.
  lifecycle {
    precondition {
      condition     = var.worker_public_ip || each.value.role == "manager" || var.ssh_bastion_host != ""
      error_message = "Private workers (worker_public_ip = false) need ssh_bastion_host: a manager's public address."
    }
  }

  # `agent` is always said: with a key file, a stray SSH_AUTH_SOCK is never
  # used; with an encrypted key (ssh_use_agent), the agent is the only way in.
  connection {
    type                = "ssh"
    host                = self.triggers.ssh_host
    user                = var.ssh_user
    agent               = var.ssh_use_agent
    private_key         = local.connection_key
    host_key            = var.swarm_host_keys[each.key]
    timeout             = var.ssh_timeout
    script_path         = local.script_path
    bastion_host        = self.triggers.role == "worker" ? local.bastion_host : null
    bastion_host_key    = self.triggers.role == "worker" && local.bastion_host != null ? var.ssh_bastion_host_key : null
    bastion_user        = var.ssh_user
    bastion_private_key = local.connection_key
  }

  # This step makes the private directory, so its own script cannot live there
  # yet: it goes to the home directory (no secret in it), never to /tmp, which
  # may be mounted noexec. Terraform merges this block over the one above.
  provisioner "remote-exec" {
    inline = [local.make_dir]

    connection {
      script_path = local.home_script_path
    }
  }

  provisioner "file" {
    source      = local.node_script
    destination = "${local.provision_dir}/swarm-node.sh"
  }

  # One script joins, and it holds the token: it deletes itself first (Terraform
  # only blanks a script after a success, and leaves it whole after a failure),
  # writes the join request with a shell builtin (never in argv) into the 0700
  # provision dir, and runs swarm-node.sh, which removes the request whatever
  # happens (the traps too, should it never get that far: a lost connection).
  provisioner "remote-exec" {
    inline = [
      var.swarm_init
      ? trimspace("${local.run_node} init ${self.triggers.private_ip} ${var.swarm_default_addr_pool}")
      : join("; ", [
        "rm -f -- \"$0\"",
        "trap 'rm -f -- ${local.join_file}' EXIT",
        "trap 'exit 129' HUP INT TERM", # sh runs no EXIT trap on a signal of itself
        "umask 077",
        "printf '%s' '${jsonencode({ ListenAddr = "0.0.0.0:2377", AdvertiseAddr = "${self.triggers.private_ip}:2377", RemoteAddrs = local.join_address, JoinToken = self.triggers.role == "manager" ? var.swarm_manager_token : var.swarm_worker_token })}' > ${local.join_file}",
        "${local.run_node} join ${local.join_file}",
      ])
    ]
  }
}

locals {
  # No key for Terraform's connections when the operator's agent holds an
  # encrypted one: Terraform cannot ask for a passphrase.
  connection_key = var.ssh_use_agent ? null : local.private_key
  # The script of the step that makes the private directory (see above).
  home_script_path = "${local.home_dir}/.swarmforge-tf-%RAND%.sh"
}
