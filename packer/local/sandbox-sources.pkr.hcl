# The null builder makes nothing itself: it connects to the builder host, which
# swarmforge creates before the build and captures into the image store after it.
source "null" "sandbox_node" {
  ssh_host             = var.builder_address
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "1m"
}
