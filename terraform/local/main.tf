locals {
  # A manager is named and addressed by its slot, not its index: while one is
  # replaced, the new manager (the twin slot) runs beside the old one.
  manager_slots = [for i in range(var.swarm_managers) : length(var.swarm_manager_slots) > 0 ? var.swarm_manager_slots[i] : i]
  manager_names = [for s in local.manager_slots : "${var.cluster_name}-manager-${s}"]
  worker_names  = [for i in range(var.swarm_workers) : "${var.cluster_name}-worker-${i}"]
  manager_ips   = [for s in local.manager_slots : cidrhost(var.sandbox_network, 10 + s)]
  worker_ips    = [for i in range(var.swarm_workers) : cidrhost(var.sandbox_network, 100 + i)]

  # Each host's private provisioning dir (0700, made by `sandbox host-up`).
  manager_provision = [for s in local.manager_slots : "${var.sandbox_dir}/m${s}/provision"]
  worker_provision  = [for i in range(var.swarm_workers) : "${var.sandbox_dir}/w${i}/provision"]

  sandbox      = "${var.sandbox_dir}/sandbox"
  node_script  = "${path.module}/scripts/swarm-node.sh"
  join_address = var.swarm_manager_ip == "" ? [] : ["${var.swarm_manager_ip}:2377"]

  # Every node joins through one step (null_resource.swarm_join), keyed by its
  # name. Phase 1 (swarm_init) has the first manager's step only, which runs
  # `docker swarm init`; phase 2 adds every other node's, which joins.
  nodes = merge(
    { for i, name in local.manager_names : name => { role = "manager", index = i } },
    { for i, name in local.worker_names : name => { role = "worker", index = i } },
  )
  bootstrap  = local.manager_names[0]
  join_steps = var.swarm_init ? { (local.bootstrap) = local.nodes[local.bootstrap] } : local.nodes
}

# On aws these are aws_instance resources; here the sandbox creates the host
# (a network namespace with its own dockerd and sshd) as EC2 would, so that
# `terraform apply -replace` gives a fresh host in both targets.

resource "null_resource" "swarm_manager" {
  count = var.swarm_managers

  # Destroy-time provisioners may only read `self`, so the (non-secret) paths
  # they need are kept here.
  triggers = {
    host      = local.manager_names[count.index]
    address   = local.manager_ips[count.index]
    sandbox   = local.sandbox
    provision = local.manager_provision[count.index]
    image     = var.sandbox_image
  }

  # As aws_instance ignores a new AMI: a new image is what a host made from now on
  # boots from (-replace included), never a reason to replace the hosts that run.
  lifecycle {
    ignore_changes = [triggers["image"]]
  }

  provisioner "local-exec" {
    command = "${local.sandbox} host-up ${self.triggers.host} ${self.triggers.address}${self.triggers.image == "" ? "" : " --image ${self.triggers.image}"}"
  }

  provisioner "local-exec" {
    when       = destroy
    on_failure = continue
    command    = "${self.triggers.sandbox} host-down ${self.triggers.host}"
  }
}

resource "null_resource" "swarm_worker" {
  count = var.swarm_workers

  # Destroy-time provisioners may only read `self`, so the (non-secret) paths
  # they need are kept here.
  triggers = {
    host      = local.worker_names[count.index]
    address   = local.worker_ips[count.index]
    sandbox   = local.sandbox
    provision = local.worker_provision[count.index]
    image     = var.sandbox_image
  }

  # As aws_instance ignores a new AMI: a new image is what a host made from now on
  # boots from (-replace included), never a reason to replace the hosts that run.
  lifecycle {
    ignore_changes = [triggers["image"]]
  }

  provisioner "local-exec" {
    command = "${local.sandbox} host-up ${self.triggers.host} ${self.triggers.address}${self.triggers.image == "" ? "" : " --image ${self.triggers.image}"}"
  }

  provisioner "local-exec" {
    when       = destroy
    on_failure = continue
    command    = "${self.triggers.sandbox} host-down ${self.triggers.host}"
  }
}

# The one step that makes a node a swarm member: `docker swarm init` on the
# first manager in phase 1, a join everywhere else in phase 2. Triggered by the
# host's id, so a replaced host joins again, and a host that runs is never
# touched again.
resource "null_resource" "swarm_join" {
  for_each = local.join_steps

  triggers = {
    host_id   = each.value.role == "manager" ? null_resource.swarm_manager[each.value.index].id : null_resource.swarm_worker[each.value.index].id
    role      = each.value.role
    address   = each.value.role == "manager" ? local.manager_ips[each.value.index] : local.worker_ips[each.value.index]
    provision = each.value.role == "manager" ? local.manager_provision[each.value.index] : local.worker_provision[each.value.index]
  }

  # `agent` said explicitly: the sandbox's key file, never a stray SSH_AUTH_SOCK.
  connection {
    type        = "ssh"
    host        = self.triggers.address
    user        = var.ssh_user
    agent       = false
    private_key = file(var.ssh_private_key_path)
    host_key    = file(var.ssh_host_ca_public_key_path)
    timeout     = "1m"
    script_path = "${self.triggers.provision}/tf-%RAND%.sh"
  }

  provisioner "file" {
    source      = local.node_script
    destination = "${self.triggers.provision}/swarm-node.sh"
  }

  # One script joins, and it holds the token: it deletes itself first (Terraform
  # only blanks a script after a success, and leaves it whole after a failure),
  # writes the join request with a shell builtin (never in argv) into the 0700
  # provision dir, and runs swarm-node.sh, which removes the request whatever
  # happens (the traps too, should it never get that far: a lost connection).
  provisioner "remote-exec" {
    inline = [
      var.swarm_init
      ? "bash ${self.triggers.provision}/swarm-node.sh init ${self.triggers.address}"
      : join("; ", [
        "rm -f -- \"$0\"",
        "trap 'rm -f -- ${self.triggers.provision}/join.json' EXIT",
        "trap 'exit 129' HUP INT TERM", # sh runs no EXIT trap on a signal of itself
        "umask 077",
        "printf '%s' '${jsonencode({ ListenAddr = "0.0.0.0:2377", AdvertiseAddr = "${self.triggers.address}:2377", RemoteAddrs = local.join_address, JoinToken = self.triggers.role == "manager" ? var.swarm_manager_token : var.swarm_worker_token })}' > ${self.triggers.provision}/join.json",
        "bash ${self.triggers.provision}/swarm-node.sh join ${self.triggers.provision}/join.json",
      ])
    ]
  }
}
