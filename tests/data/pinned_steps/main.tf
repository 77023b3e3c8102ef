# A stand-in for terraform/aws's nodes and swarm steps with null_resources
# (tests/test_replaced_node_rejoins.py): as in terraform/aws, a node's swarm step
# exists only once its host key is pinned (var.swarm_host_keys), and is triggered by
# its node's id, so a node made anew is joined again. Every resource writes what it
# did to var.order_log (whether a token came, never the token itself).

terraform {
  required_version = ">= 1.2"
  required_providers {
    null = {
      source = "hashicorp/null"
    }
  }
}

variable "cluster_name" {
  type = string
}

variable "order_log" {
  type = string
}

variable "swarm_init" {
  type    = bool
  default = false
}

variable "swarm_managers" {
  type = number
}

variable "swarm_manager_slots" {
  type    = list(number)
  default = []
}

variable "swarm_workers" {
  type = number
}

variable "swarm_host_keys" {
  type    = map(string)
  default = {}
}

variable "swarm_manager_token" {
  type      = string
  default   = ""
  sensitive = true
}

variable "swarm_worker_token" {
  type      = string
  default   = ""
  sensitive = true
}

variable "swarm_manager_ip" {
  type    = string
  default = ""
}

locals {
  manager_names = [for i in range(var.swarm_managers) : "${var.cluster_name}-manager-${i}"]
  worker_names  = [for i in range(var.swarm_workers) : "${var.cluster_name}-worker-${i}"]
  nodes = merge(
    { for i, name in local.manager_names : name => { role = "manager", index = i } },
    { for i, name in local.worker_names : name => { role = "worker", index = i } },
  )
  all_steps  = var.swarm_init ? { (local.manager_names[0]) = local.nodes[local.manager_names[0]] } : local.nodes
  join_steps = { for name, node in local.all_steps : name => node if contains(keys(var.swarm_host_keys), name) }
}

resource "null_resource" "swarm_manager" {
  count = var.swarm_managers

  triggers = {
    name = local.manager_names[count.index]
  }

  provisioner "local-exec" {
    command = "echo 'node: ${self.triggers.name}' >> ${var.order_log}"
  }
}

resource "null_resource" "swarm_worker" {
  count = var.swarm_workers

  triggers = {
    name = local.worker_names[count.index]
  }

  provisioner "local-exec" {
    command = "echo 'node: ${self.triggers.name}' >> ${var.order_log}"
  }
}

resource "null_resource" "swarm_join" {
  for_each = local.join_steps

  triggers = {
    node_id = each.value.role == "manager" ? null_resource.swarm_manager[each.value.index].id : null_resource.swarm_worker[each.value.index].id
  }

  provisioner "local-exec" {
    command = "echo 'step: ${each.key} ${var.swarm_init ? "init" : "join"} ${(each.value.role == "manager" ? var.swarm_manager_token : var.swarm_worker_token) == "" ? "without" : "with"} a token' >> ${var.order_log}"
  }
}

output "managers" {
  value = [for i, m in null_resource.swarm_manager : {
    name = m.triggers.name, private_ip = "10.0.0.${10 + i}", ssh_host = "10.0.0.${10 + i}", id = m.id
  }]
}

output "workers" {
  value = [for i, w in null_resource.swarm_worker : {
    name = w.triggers.name, private_ip = "10.0.0.${100 + i}", ssh_host = "10.0.0.${100 + i}", id = w.id
  }]
}

output "joined" {
  value = keys(null_resource.swarm_join)
}
