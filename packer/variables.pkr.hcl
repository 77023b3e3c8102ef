# Per-build values come from the var file `invoke bake` renders for each bake
# (swarmforge/templates/bake.pkrvars.hcl.j2) and passes with -var-file.

variable "cluster" {
  type        = string
  description = "Cluster name; tags the AMI so swarmforge can find, list and prune it."
}

variable "region" {
  type        = string
  description = "Region the build instance runs in and the AMI is registered in first."
  default     = "us-east-1"
}

variable "ami_regions" {
  type        = list(string)
  description = "Extra regions the finished AMI is copied to."
  default     = []
}

variable "instance_type" {
  type        = string
  description = "Instance type of the temporary build instance."
  default     = "t3.small"
}

variable "ubuntu_release" {
  type        = string
  description = "Ubuntu LTS release as it appears in Canonical's AMI names, e.g. jammy-22.04."
  default     = "noble-24.04"
}

# Canonical publishes Ubuntu from one account per partition: 099720109477 (aws),
# 513442679011 (aws-us-gov), 837727238323 (aws-cn); the bake passes its region's.
variable "ubuntu_owner" {
  type        = string
  description = "Canonical's account id in the build region's partition: whose Ubuntu AMIs the build starts from."
  default     = "099720109477"

  validation {
    condition     = regex_replace(var.ubuntu_owner, "^[0-9]{12}$", "account") == "account"
    error_message = "The ubuntu_owner must be a 12-digit AWS account id."
  }
}

variable "ssh_username" {
  type        = string
  description = "Login user of Canonical's Ubuntu AMIs; also added to the docker group."
  default     = "ubuntu"
}

variable "docker_version" {
  type        = string
  description = "Docker Engine version prefix to pin from Docker's apt repository, e.g. 27.3."
}

variable "docker_version_min" {
  type        = string
  description = "Lowest acceptable Docker Engine version within that prefix (empty: any)."
  default     = ""
}

variable "docker_version_spec" {
  type        = string
  description = "The version spec as the operator wrote it (e.g. ~=27.3); recorded in tags."
}

variable "scripts_dir" {
  type        = string
  description = "Directory holding install-docker.sh (swarmforge passes the repo's scripts/ as an absolute path)."
}

variable "git_commit" {
  type        = string
  description = "Commit of swarmforge the AMI was baked from."
}

# Ours, not Packer's PackerRunUUID: that one exists only for provisioners and
# post-processors. Read in a builder's tags, it is evaluated after the AMI is
# registered, and an error there makes Packer deregister the finished image.
variable "swarmforge_run_id" {
  type        = string
  description = "This bake's id (a random UUID swarmforge makes): tags the image and comes back in the manifest."

  validation {
    # regex_replace, not regex: Packer 1.6 has no regex().
    condition     = regex_replace(var.swarmforge_run_id, "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", "uuid4") == "uuid4"
    error_message = "The swarmforge_run_id must be a lowercase random UUID (uuid4), e.g. 0b6f3e52-5a4e-4d2b-9c61-2f0a8d3b7e19."
  }
}

# The Docker daemon settings every node image gets, the AMI (install-docker.sh)
# and the local image (provision-sandbox-node.sh) alike: json-file logs, rotated.
variable "docker_log_max_size" {
  type        = string
  description = "Largest a container's log file grows before it is rotated, e.g. 10m."
  default     = "10m"
}

variable "docker_log_max_file" {
  type        = string
  description = "How many rotated log files a container keeps (Docker wants a string)."
  default     = "5"
}

locals {
  docker_daemon_settings = jsonencode({
    "log-driver" = "json-file"
    "log-opts" = {
      "max-size" = var.docker_log_max_size
      "max-file" = var.docker_log_max_file
    }
  })
}
