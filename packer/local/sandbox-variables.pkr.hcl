# The local node image (`invoke bake --target local`): swarmforge builds it from
# these files plus ../variables.pkr.hcl, which it shares with the AMI. They live
# apart because Packer builds every source of a directory: the AMI's bake must
# not start this one, and this one needs no amazon plugin, so Debian's Packer
# 1.6.6 runs it (no `packer {}` block here either).

variable "builder_address" {
  type        = string
  description = "Address of the throwaway builder host on the cluster's sandbox bridge."
}

variable "builder_dir" {
  type        = string
  description = "The builder host's dir: its 0700 provision dir and its daemon settings file live there."
}

variable "ssh_private_key_file" {
  type        = string
  description = "The cluster's sandbox client key; the builder trusts it as every sandbox host does."
}

variable "preload_images" {
  type        = list(string)
  description = "`docker save` archives every node of the image holds (the sandbox has no registry)."
}
