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
}

# On aws these are aws_instance resources; here the sandbox creates the host
# (a network namespace with its own dockerd and sshd) as EC2 would, so that
# `terraform apply -replace` gives a fresh host in both targets.

resource "null_resource" "swarm_manager" {
  count = var.swarm_managers

  # Destroy-time provisioners and the connection may only read `self`, so the
  # (non-secret) paths they need are kept here.
  triggers = {
    host      = local.manager_names[count.index]
    address   = local.manager_ips[count.index]
    sandbox   = local.sandbox
    provision = local.manager_provision[count.index]
    ssh_user  = var.ssh_user
    ssh_key   = var.ssh_private_key_path
    host_ca   = var.ssh_host_ca_public_key_path
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

  connection {
    type        = "ssh"
    host        = self.triggers.address
    user        = self.triggers.ssh_user
    private_key = file(self.triggers.ssh_key)
    host_key    = file(self.triggers.host_ca)
    timeout     = "1m"
    script_path = "${self.triggers.provision}/tf-%RAND%.sh"
  }

  provisioner "file" {
    source      = local.node_script
    destination = "${self.triggers.provision}/swarm-node.sh"
  }

  # The join request holds the token: written by a shell builtin (never in argv)
  # into the 0700 provision dir, and removed by swarm-node.sh once used.
  provisioner "remote-exec" {
    inline = [
      var.swarm_init && count.index == 0 ? "true" : join(" ", [
        "umask 077; printf '%s'",
        "'${jsonencode({ ListenAddr = "0.0.0.0:2377", AdvertiseAddr = "${self.triggers.address}:2377", RemoteAddrs = local.join_address, JoinToken = var.swarm_manager_token })}'",
        "> ${self.triggers.provision}/join.json",
      ])
    ]
  }

  provisioner "remote-exec" {
    inline = [
      var.swarm_init && count.index == 0
      ? "bash ${self.triggers.provision}/swarm-node.sh init ${self.triggers.address}"
      : "bash ${self.triggers.provision}/swarm-node.sh join ${self.triggers.provision}/join.json"
    ]
  }
}

resource "null_resource" "swarm_worker" {
  count = var.swarm_workers

  # Destroy-time provisioners and the connection may only read `self`, so the
  # (non-secret) paths they need are kept here.
  triggers = {
    host      = local.worker_names[count.index]
    address   = local.worker_ips[count.index]
    sandbox   = local.sandbox
    provision = local.worker_provision[count.index]
    ssh_user  = var.ssh_user
    ssh_key   = var.ssh_private_key_path
    host_ca   = var.ssh_host_ca_public_key_path
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

  connection {
    type        = "ssh"
    host        = self.triggers.address
    user        = self.triggers.ssh_user
    private_key = file(self.triggers.ssh_key)
    host_key    = file(self.triggers.host_ca)
    timeout     = "1m"
    script_path = "${self.triggers.provision}/tf-%RAND%.sh"
  }

  provisioner "file" {
    source      = local.node_script
    destination = "${self.triggers.provision}/swarm-node.sh"
  }

  provisioner "remote-exec" {
    inline = [join(" ", [
      "umask 077; printf '%s'",
      "'${jsonencode({ ListenAddr = "0.0.0.0:2377", AdvertiseAddr = "${self.triggers.address}:2377", RemoteAddrs = local.join_address, JoinToken = var.swarm_worker_token })}'",
      "> ${self.triggers.provision}/join.json",
    ])]
  }

  provisioner "remote-exec" {
    inline = ["bash ${self.triggers.provision}/swarm-node.sh join ${self.triggers.provision}/join.json"]
  }
}
