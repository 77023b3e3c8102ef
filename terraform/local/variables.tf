# The swarm contract: the same variables as terraform/aws.

variable "cluster_name" {
  description = "Name of the cluster; prefixes hostnames and keeps clusters apart."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.cluster_name))
    error_message = "The cluster_name must be 2-24 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "swarm_init" {
  description = "Run `docker swarm init` on manager 0 when it is created (phase 1 of apply only)."
  type        = bool
  default     = false
}

variable "swarm_managers" {
  description = "Number of manager nodes. Odd counts keep a majority through (n-1)/2 failures; one more (8 at most) only while a manager is being replaced."
  type        = number
  default     = 3

  validation {
    condition     = var.swarm_managers >= 1 && var.swarm_managers <= 8 && var.swarm_managers % 1 == 0
    error_message = "The swarm_managers must be a whole number from 1 to 8 (7, plus the new manager while one is replaced)."
  }
}

variable "swarm_manager_slots" {
  description = "Slot of each manager, in index order (default 0..swarm_managers-1). A slot names the node and places it (AZ, sandbox address); a replacement takes the twin slot (s+8 or s-8), so the new manager joins before the old one leaves. Set by the pipeline."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for s in var.swarm_manager_slots : s >= 0 && s <= 15 && floor(s) == s]) && length(distinct(var.swarm_manager_slots)) == length(var.swarm_manager_slots)
    error_message = "The swarm_manager_slots must be distinct whole numbers from 0 to 15."
  }
}

variable "swarm_workers" {
  description = "Number of worker nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.swarm_workers >= 0 && var.swarm_workers <= 150 && var.swarm_workers % 1 == 0
    error_message = "The swarm_workers must be a whole number from 0 to 150 on the local sandbox."
  }
}

variable "swarm_manager_token" {
  description = "Manager join token, read from a healthy manager; passed only as TF_VAR_swarm_manager_token."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.swarm_manager_token == "" || can(regex("^SWMTKN-1-[0-9a-z]+-[0-9a-z]+$", var.swarm_manager_token))
    error_message = "The swarm_manager_token must be empty or a Docker join token (SWMTKN-1-...)."
  }
}

variable "swarm_worker_token" {
  description = "Worker join token, read from a healthy manager; passed only as TF_VAR_swarm_worker_token."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.swarm_worker_token == "" || can(regex("^SWMTKN-1-[0-9a-z]+-[0-9a-z]+$", var.swarm_worker_token))
    error_message = "The swarm_worker_token must be empty or a Docker join token (SWMTKN-1-...)."
  }
}

variable "swarm_manager_ip" {
  description = "Address of a healthy manager that new nodes join through."
  type        = string
  default     = ""

  validation {
    condition     = var.swarm_manager_ip == "" || can(cidrhost("${var.swarm_manager_ip}/32", 0))
    error_message = "The swarm_manager_ip must be empty or an IPv4 address."
  }
}

variable "swarm_host_keys" {
  description = "Pinned SSH host key (\"type base64\") of each node, by name, read from a trusted source before any token travels. On aws a node's swarm step waits until its key is here; the sandbox pins every host through its host CA instead."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key in values(var.swarm_host_keys) : can(regex("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}$", key))])
    error_message = "Each swarm_host_keys value must be one public key: \"<type> <base64>\"."
  }
}

variable "ssh_user" {
  description = "User the provisioners log in as."
  type        = string
  default     = "root"
}

variable "ssh_private_key_path" {
  description = "Private key the provisioners log in with."
  type        = string
}

# Local sandbox only: where the sandbox keeps this cluster's hosts.

variable "sandbox_dir" {
  description = "The cluster's sandbox directory (host runtime dirs and the `sandbox` command)."
  type        = string

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.sandbox_dir))
    error_message = "The sandbox_dir must be an absolute path of letters, digits, '.', '_', '-' and '/'."
  }
}

variable "sandbox_network" {
  description = "The /24 network of the cluster's sandbox bridge (manager i is .10+i, worker i is .100+i)."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.sandbox_network)) && can(regex("/24$", var.sandbox_network))
    error_message = "The sandbox_network must be an IPv4 /24 network, e.g. 10.213.7.0/24."
  }
}

variable "ssh_host_ca_public_key_path" {
  description = "Public key of the SSH CA that signs every sandbox host key, so host keys are verified."
  type        = string
}

variable "sandbox_image" {
  description = "The local node image new hosts boot from (a dir of the image store, made by `invoke bake --target local`); empty: the sandbox's stock images. Hosts already up keep the image they booted from: replacing them is `invoke roll`'s job."
  type        = string
  default     = ""

  validation {
    condition     = var.sandbox_image == "" || can(regex("^/[A-Za-z0-9._/-]+$", var.sandbox_image))
    error_message = "The sandbox_image must be empty or an absolute path of letters, digits, '.', '_', '-' and '/'."
  }
}
