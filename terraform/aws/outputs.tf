# The same outputs as terraform/local. Lists, so they never fail while fewer
# nodes exist (phase 1 has only manager 0).

output "managers" {
  description = "Manager nodes in index order: name, private_ip (swarm address), ssh_host (public address) and id (the instance id)."
  value = [for m in aws_instance.swarm_manager : {
    name       = m.tags["Name"]
    private_ip = m.private_ip
    ssh_host   = m.public_ip
    id         = m.id
  }]
}

output "workers" {
  description = "Worker nodes in index order: name, private_ip (swarm address), ssh_host (the private address when worker_public_ip is false: reach it through a manager) and id (the instance id)."
  value = [for w in aws_instance.swarm_worker : {
    name       = w.tags["Name"]
    private_ip = w.private_ip
    ssh_host   = var.worker_public_ip ? w.public_ip : w.private_ip
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

# AWS only.

output "ingress_dns_name" {
  description = "DNS name of the ingress Network Load Balancer, where the TCP ports of public_ports and published_ports answer; null without one (ingress_nlb = false, or no TCP port published)."
  value       = one(aws_lb.ingress[*].dns_name)
}
