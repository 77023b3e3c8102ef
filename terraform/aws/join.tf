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
  ]

  connection {
    type                = "ssh"
    host                = self.triggers.ssh_host
    user                = var.ssh_user
    private_key         = local.private_key
    host_key            = var.swarm_host_keys[each.key]
    timeout             = var.ssh_timeout
    script_path         = local.script_path
    bastion_host        = self.triggers.role == "worker" ? local.bastion_host : null
    bastion_host_key    = self.triggers.role == "worker" && local.bastion_host != null ? var.ssh_bastion_host_key : null
    bastion_user        = var.ssh_user
    bastion_private_key = local.private_key
  }

  # No secret in this step: its script may use the default path in /tmp,
  # since the private directory does not exist yet.
  provisioner "remote-exec" {
    inline = [local.make_dir]

    connection {
      type                = "ssh"
      host                = self.triggers.ssh_host
      user                = var.ssh_user
      private_key         = local.private_key
      host_key            = var.swarm_host_keys[each.key]
      timeout             = var.ssh_timeout
      bastion_host        = self.triggers.role == "worker" ? local.bastion_host : null
      bastion_host_key    = self.triggers.role == "worker" && local.bastion_host != null ? var.ssh_bastion_host_key : null
      bastion_user        = var.ssh_user
      bastion_private_key = local.private_key
    }
  }

  provisioner "file" {
    source      = local.node_script
    destination = "${local.provision_dir}/swarm-node.sh"
  }

  # The join request holds the token: written by a shell builtin (never in argv)
  # into the 0700 provision dir, and removed by swarm-node.sh once used.
  provisioner "remote-exec" {
    inline = [
      var.swarm_init ? "true" : join(" ", [
        "umask 077; printf '%s'",
        "'${jsonencode({ ListenAddr = "0.0.0.0:2377", AdvertiseAddr = "${self.triggers.private_ip}:2377", RemoteAddrs = local.join_address, JoinToken = self.triggers.role == "manager" ? var.swarm_manager_token : var.swarm_worker_token })}'",
        "> ${local.join_file}",
      ])
    ]
  }

  provisioner "remote-exec" {
    inline = [
      var.swarm_init
      ? "${local.run_node} init ${self.triggers.private_ip}"
      : "${local.run_node} join ${local.join_file}"
    ]
  }
}
