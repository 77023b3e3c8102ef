# The same outputs as terraform/aws. Lists, so they never fail while fewer
# nodes exist (phase 1 has only manager 0).

output "managers" {
  description = "Manager nodes in index order: name, private_ip (swarm address), ssh_host and id."
  value = [for m in null_resource.swarm_manager : {
    name       = m.triggers.host
    private_ip = m.triggers.address
    ssh_host   = m.triggers.address
    id         = m.id
  }]
}

output "workers" {
  description = "Worker nodes in index order: name, private_ip (swarm address), ssh_host and id."
  value = [for w in null_resource.swarm_worker : {
    name       = w.triggers.host
    private_ip = w.triggers.address
    ssh_host   = w.triggers.address
    id         = w.id
  }]
}

output "ssh_user" {
  description = "User to SSH to the nodes as."
  value       = var.ssh_user
}

output "joined" {
  description = "Names of the nodes whose swarm step (init or join) exists in the state: once any but the first manager's does, the swarm was formed and phase 1 never runs again."
  value       = keys(null_resource.swarm_join)
}
