################################################################################
# The swarm contract: the same variables, types and sensitivity as
# terraform/local (tests/test_contract.py keeps the two in step).
################################################################################

variable "cluster_name" {
  description = "Name of the cluster; prefixes instance names and keeps clusters apart."
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
    condition     = var.swarm_managers >= 1 && var.swarm_managers <= 8 && floor(var.swarm_managers) == var.swarm_managers
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
    condition     = var.swarm_workers >= 0 && var.swarm_workers <= 500 && floor(var.swarm_workers) == var.swarm_workers
    error_message = "The swarm_workers must be a whole number from 0 to 500."
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
  description = "Private address of a healthy manager that new nodes join through."
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
  description = "User the provisioners log in as (the AMI's default user: `ubuntu` on Ubuntu)."
  type        = string
  default     = "ubuntu"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "The ssh_user must be a valid Linux user name."
  }
}

variable "ssh_private_key_path" {
  description = "Private key the provisioners log in with; it matches the key pair named by key_name."
  type        = string
}

################################################################################
# AWS only
################################################################################

variable "region" {
  description = "AWS region the cluster runs in."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$", var.region))
    error_message = "The region must be an AWS region name such as us-east-1."
  }
}

variable "swarm_ami_id" {
  description = "AMI with Docker preinstalled, as baked by `invoke bake`. Running nodes keep their AMI until replaced."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.swarm_ami_id))
    error_message = "The swarm_ami_id must be an AMI id such as ami-0123456789abcdef0."
  }
}

variable "swarm_instance_type" {
  description = "EC2 instance type of every node, unless swarm_manager_instance_type or swarm_worker_instance_type says otherwise. A change applies to nodes made from then on (`invoke roll --all` replaces them one at a time)."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9-]+$", var.swarm_instance_type))
    error_message = "The swarm_instance_type must be an EC2 instance type such as t3.small."
  }
}

variable "swarm_manager_instance_type" {
  description = "EC2 instance type of the managers. Null: swarm_instance_type."
  type        = string
  default     = null

  validation {
    condition     = var.swarm_manager_instance_type == null || can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9-]+$", var.swarm_manager_instance_type))
    error_message = "The swarm_manager_instance_type must be null or an EC2 instance type such as t3.small."
  }
}

variable "swarm_worker_instance_type" {
  description = "EC2 instance type of the workers. Null: swarm_instance_type."
  type        = string
  default     = null

  validation {
    condition     = var.swarm_worker_instance_type == null || can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9-]+$", var.swarm_worker_instance_type))
    error_message = "The swarm_worker_instance_type must be null or an EC2 instance type such as t3.medium."
  }
}

variable "key_name" {
  description = "Name of the EC2 key pair installed on every node (its private half is ssh_private_key_path)."
  type        = string

  validation {
    condition     = length(var.key_name) >= 1 && length(var.key_name) <= 255
    error_message = "The key_name must be the name of an existing EC2 key pair (1-255 characters)."
  }
}

variable "vpc_id" {
  description = "VPC to run in. Null uses the region's default VPC and its default subnets; set it together with subnet_ids."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "The vpc_id must be null or a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets of vpc_id, ideally one per availability zone; the managers (and the workers, unless worker_subnet_ids) are spread over them round-robin. Public subnets: managers have a public address. Empty with the default VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Every subnet_ids entry must be a subnet id such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = (var.vpc_id == null) == (length(var.subnet_ids) == 0)
    error_message = "Set vpc_id and subnet_ids together, or neither to use the default VPC."
  }
}

variable "worker_subnet_ids" {
  description = "Subnets of vpc_id for the workers, spread round-robin; empty: subnet_ids. Private workers (worker_public_ip = false) belong in private subnets whose default route leads to a NAT gateway (create_nat_gateway, or one of your own)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.worker_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Every worker_subnet_ids entry must be a subnet id such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = length(var.worker_subnet_ids) == 0 || var.vpc_id != null
    error_message = "The worker_subnet_ids are subnets of vpc_id: set vpc_id and subnet_ids too."
  }
}

variable "create_nat_gateway" {
  description = "Create one NAT gateway, with an Elastic IP, in the first of subnet_ids (a public subnet), and route the worker subnets' outbound traffic through it: private workers' way to registries and OS updates. Billed by the hour and per GB processed."
  type        = bool
  default     = false

  validation {
    condition     = !var.create_nat_gateway || (!var.worker_public_ip && length(var.worker_subnet_ids) > 0)
    error_message = "The create_nat_gateway serves private workers only: set worker_public_ip = false and worker_subnet_ids (private subnets of vpc_id)."
  }

  validation {
    condition     = !var.create_nat_gateway || length(setintersection(var.worker_subnet_ids, var.subnet_ids)) == 0
    error_message = "With create_nat_gateway, the worker_subnet_ids must be subnets of their own, not in subnet_ids: their default route goes through the NAT gateway, the managers' through the internet gateway."
  }
}

variable "private_route_table_id" {
  description = "With create_nat_gateway: add the default route through the NAT gateway to this route table of yours (the worker subnets already use it) instead of creating a route table and associating it with worker_subnet_ids. It must have no default route yet."
  type        = string
  default     = null

  validation {
    condition     = var.private_route_table_id == null || can(regex("^rtb-[0-9a-f]{8,17}$", var.private_route_table_id))
    error_message = "The private_route_table_id must be null or a route table id such as rtb-0123456789abcdef0."
  }

  validation {
    condition     = var.private_route_table_id == null || var.create_nat_gateway
    error_message = "The private_route_table_id takes the NAT gateway's route: set create_nat_gateway = true too."
  }
}

variable "allowed_ssh_cidrs" {
  description = "IPv4 networks allowed to SSH to the nodes: where Terraform and swarmforge run from. Never the whole internet."
  type        = list(string)

  validation {
    condition     = length(var.allowed_ssh_cidrs) > 0 && alltrue([for c in var.allowed_ssh_cidrs : can(cidrnetmask(c))])
    error_message = "The allowed_ssh_cidrs must be a non-empty list of IPv4 CIDRs such as 203.0.113.7/32."
  }

  validation {
    condition     = !anytrue([for c in var.allowed_ssh_cidrs : endswith(c, "/0")])
    error_message = "SSH must not be open to 0.0.0.0/0: list the addresses you run swarmforge from."
  }

  # Nor to the whole internet in pieces (0.0.0.0/1 and 128.0.0.0/1, 256 /8s...).
  # Terraform has no set union of networks, but two CIDR blocks are either
  # disjoint or one holds the other: the blocks that no other one holds are
  # disjoint, so together they cover every IPv4 address exactly when their sizes
  # add up to 2^32. A block is its prefix length and its first address as a
  # number; b holds a when b is shorter and they agree on b's leading bits.
  # `[for blocks in [LIST] : EXPR][0]` names LIST once; malformed entries are
  # left to the validation above (try).
  validation {
    condition = try([
      for blocks in [[
        for c in distinct([for c in var.allowed_ssh_cidrs : "${cidrhost(c, 0)}/${tonumber(split("/", c)[1])}"]) : {
          prefix = tonumber(split("/", c)[1])
          first  = sum([for i, octet in split(".", split("/", c)[0]) : tonumber(octet) * pow(256, 3 - i)])
        }
        ]] : sum(concat([0], [
          for a in blocks : pow(2, 32 - a.prefix)
          if !anytrue([for b in blocks : b.prefix < a.prefix && floor(a.first / pow(2, 32 - b.prefix)) == floor(b.first / pow(2, 32 - b.prefix))])
      ])) < pow(2, 32)
    ][0], true)
    error_message = "The allowed_ssh_cidrs together cover the whole internet (such as 0.0.0.0/1 and 128.0.0.0/1): list the addresses you run swarmforge from."
  }
}

variable "public_ports" {
  description = "Ports the swarm publishes to clients (the routing mesh answers on every node), with the networks allowed to reach them."
  type = list(object({
    port        = number
    protocol    = optional(string, "tcp")
    cidr_blocks = optional(list(string), ["0.0.0.0/0"])
  }))
  default = []

  validation {
    condition     = alltrue([for p in var.public_ports : p.port >= 1 && p.port <= 65535 && floor(p.port) == p.port && contains(["tcp", "udp"], p.protocol)])
    error_message = "Every public_ports entry needs a port from 1 to 65535 and protocol tcp or udp."
  }

  validation {
    condition     = alltrue([for p in var.public_ports : !contains([22, 2377, 7946, 4789], p.port)])
    error_message = "The public_ports must not include 22 (see allowed_ssh_cidrs) or the swarm's internal ports 2377, 7946 and 4789."
  }

  validation {
    condition     = alltrue(flatten([for p in var.public_ports : [for c in p.cidr_blocks : can(cidrnetmask(c))]]))
    error_message = "Every public_ports cidr_blocks entry must be an IPv4 CIDR."
  }
}

variable "published_ports" {
  description = "TCP ports of services published on the swarm's routing mesh, served at the ingress NLB's DNS name (ingress_nlb) and open to allowed_ingress_cidrs: the short form of public_ports' TCP entries (the two lists add up)."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for p in var.published_ports : p >= 1 && p <= 65535 && floor(p) == p && !contains([22, 2377, 7946, 4789], p)])
    error_message = "Every published_ports entry must be a port from 1 to 65535, and not 22 (see allowed_ssh_cidrs) or the swarm's internal ports 2377, 7946 and 4789."
  }
}

variable "allowed_ingress_cidrs" {
  description = "Who may reach published_ports, through the ingress NLB and on the nodes: IPv4 networks (default: anyone)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_ingress_cidrs) > 0 && alltrue([for c in var.allowed_ingress_cidrs : can(cidrnetmask(c))])
    error_message = "The allowed_ingress_cidrs must be one or more IPv4 CIDRs such as 203.0.113.0/24."
  }
}

variable "worker_public_ip" {
  description = "Give workers a public IP. When false, provisioners reach workers through ssh_bastion_host, a manager."
  type        = bool
  default     = true
}

variable "ssh_bastion_host" {
  description = "Public address of a manager (the `managers` output of phase 1) to reach private workers through, when worker_public_ip is false."
  type        = string
  default     = ""

  validation {
    condition     = var.ssh_bastion_host == "" || can(regex("^[A-Za-z0-9.:-]+$", var.ssh_bastion_host))
    error_message = "The ssh_bastion_host must be empty, an IP address or a host name."
  }

  # That private workers need it is a precondition of their swarm steps (join.tf):
  # a validation here would be checked by `destroy` too, which needs no bastion.
}

variable "ssh_bastion_host_key" {
  description = "Pinned SSH host key of ssh_bastion_host (the manager private workers are reached through)."
  type        = string
  default     = ""

  validation {
    condition     = var.ssh_bastion_host_key == "" || can(regex("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}$", var.ssh_bastion_host_key))
    error_message = "The ssh_bastion_host_key must be empty or one public key: \"<type> <base64>\"."
  }
}

variable "root_volume_size" {
  description = "Size of each node's encrypted root volume in GiB (images and container layers live there)."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384 && floor(var.root_volume_size) == var.root_volume_size
    error_message = "The root_volume_size must be a whole number of GiB from 8 to 16384."
  }
}

variable "root_volume_kms_key_id" {
  description = "KMS key ARN for the root volumes (a key's ARN: EC2 reports that, so an alias would read as a change at every plan). Null uses the account's default EBS key. A change applies to nodes made from then on."
  type        = string
  default     = null

  validation {
    condition     = var.root_volume_kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.root_volume_kms_key_id))
    error_message = "The root_volume_kms_key_id must be null or a KMS key ARN: arn:<partition>:kms:<region>:<account>:key/<key id>."
  }
}

variable "iam_instance_profile" {
  description = "Name of an instance profile of yours for the nodes. Null: terraform/aws makes one (iam.tf) with ECR read-only access and, with container_logs = \"cloudwatch\", logs:CreateLogStream and logs:PutLogEvents on the cluster's log group. Yours must allow the same for private images and CloudWatch logs to work."
  type        = string
  default     = null

  validation {
    condition     = var.iam_instance_profile == null || can(regex("^[\\w+=,.@-]{1,128}$", var.iam_instance_profile))
    error_message = "The iam_instance_profile must be null or an instance profile's name (1-128 letters, digits and +=,.@_-), not its ARN."
  }
}

variable "ssh_use_agent" {
  description = "Log in through the operator's ssh-agent instead of ssh_private_key_path's content: set by swarmforge when that key has a passphrase (which Terraform cannot ask for) and the agent holds it. False: the key file only, whatever SSH_AUTH_SOCK says."
  type        = bool
  default     = false
}

variable "swarm_default_addr_pool" {
  description = "Where the swarm's overlay networks take their subnets (/24s of it: `docker swarm init --default-addr-pool`); empty: Docker's default, 10.0.0.0/8. swarmforge picks one outside the VPC's networks. Read once, by the first manager's `docker swarm init`: a change does nothing to a swarm that exists."
  type        = string
  default     = ""

  validation {
    condition     = var.swarm_default_addr_pool == "" || try(cidrsubnet(var.swarm_default_addr_pool, 0, 0) == var.swarm_default_addr_pool && tonumber(split("/", var.swarm_default_addr_pool)[1]) >= 8 && tonumber(split("/", var.swarm_default_addr_pool)[1]) <= 24 && !strcontains(var.swarm_default_addr_pool, ":"), false)
    error_message = "The swarm_default_addr_pool must be empty or an IPv4 network from /8 to /24 written as its first address, such as 10.1.0.0/16."
  }
}

variable "detailed_monitoring" {
  description = "Enable 1-minute CloudWatch metrics on every node (billed per instance)."
  type        = bool
  default     = false
}

variable "ssh_timeout" {
  description = "How long provisioners wait for a new node's SSH to come up."
  type        = string
  default     = "5m"

  validation {
    condition     = can(regex("^[0-9]+[sm]$", var.ssh_timeout))
    error_message = "The ssh_timeout must be a duration such as 90s or 5m."
  }
}

variable "tags" {
  description = "Tags added to every resource (Name, Cluster, Role, Index and Slot are set by this configuration)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) >= 1 && length(k) <= 128 && length(v) <= 256 && !startswith(lower(k), "aws:")])
    error_message = "Every tags key must be 1-128 characters and not start with aws:, every value at most 256 characters."
  }

  validation {
    condition     = length(setintersection(keys(var.tags), ["Name", "Cluster", "Role", "Index", "Slot"])) == 0
    error_message = "The tags must not set Name, Cluster, Role, Index or Slot: this configuration sets them (Cluster finds the nodes)."
  }
}

################################################################################
# AWS only, optional parts: ingress.tf, logs.tf, efs.tf (iam.tf takes
# iam_instance_profile above)
################################################################################

variable "ingress_nlb" {
  description = "Put a Network Load Balancer in front of every node for the TCP ports of public_ports and published_ports (one listener, target group and TCP health check per port), reachable at the ingress_dns_name output. Made only while one of them has a TCP port. Billed by the hour and per LCU."
  type        = bool
  default     = true
}

variable "container_logs" {
  description = "Where containers log: \"local\" (the AMI's json-file driver, rotated on the node) or \"cloudwatch\" (a log group per cluster, written by Docker's awslogs driver; the node role may write it). Applies to nodes made from then on: `invoke roll --all` replaces the running ones."
  type        = string
  default     = "local"

  validation {
    condition     = contains(["local", "cloudwatch"], var.container_logs)
    error_message = "The container_logs must be \"local\" or \"cloudwatch\"."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps container logs (container_logs = \"cloudwatch\"); 0 keeps them forever. One of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  type        = number
  default     = 30

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be one of CloudWatch's values: 0 (forever), 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "log_kms_key_id" {
  description = "KMS key ARN to encrypt the container log group with (its key policy must let logs.<region>.amazonaws.com use it). Null: CloudWatch's own encryption."
  type        = string
  default     = null

  validation {
    condition     = var.log_kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.log_kms_key_id))
    error_message = "The log_kms_key_id must be null or a KMS key ARN: arn:<partition>:kms:<region>:<account>:key/<key id>."
  }

  validation {
    condition     = var.log_kms_key_id == null || var.container_logs == "cloudwatch"
    error_message = "The log_kms_key_id encrypts the CloudWatch log group: set container_logs = \"cloudwatch\" too."
  }
}

variable "efs" {
  description = "Make an EFS file system shared by every node, mounted at /mnt/efs (NFS from the nodes only) by the nodes made from then on. Billed per GB-month stored. Destroying the cluster destroys it and its data."
  type        = bool
  default     = false
}

variable "efs_subnet_ids" {
  description = "Subnets of vpc_id for the EFS mount targets, one per AZ the nodes run in (EFS allows one mount target per AZ). Empty: subnet_ids (or the default VPC's default subnets)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.efs_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Every efs_subnet_ids entry must be a subnet id such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = length(var.efs_subnet_ids) == 0 || (var.efs && var.vpc_id != null)
    error_message = "The efs_subnet_ids are subnets of vpc_id for the file system: set efs = true and vpc_id too."
  }
}

variable "efs_kms_key_id" {
  description = "KMS key ARN to encrypt the EFS file system with. Null: the account's AWS-managed EFS key. Changing it replaces the file system (and loses its data)."
  type        = string
  default     = null

  validation {
    condition     = var.efs_kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.efs_kms_key_id))
    error_message = "The efs_kms_key_id must be null or a KMS key ARN: arn:<partition>:kms:<region>:<account>:key/<key id>."
  }

  validation {
    condition     = var.efs_kms_key_id == null || var.efs
    error_message = "The efs_kms_key_id encrypts the shared file system: set efs = true too."
  }
}

# Spot workers: spot.tf.

variable "worker_spot" {
  description = "Run the workers as spot instances (one-time, terminated on interruption), which leave the swarm gracefully on EC2's two-minute notice. A change applies to workers made from then on (`invoke roll --all` replaces the others one at a time); the managers enable the unit that removes departed spot workers when they join, so roll them too when turning this on in a running cluster."
  type        = bool
  default     = false
}

variable "worker_spot_max_price" {
  description = "Highest hourly price in USD to pay for a spot worker, such as \"0.0125\". Null: up to the on-demand price (AWS's default and advice: a lower cap only adds interruptions)."
  type        = string
  default     = null

  validation {
    condition     = var.worker_spot_max_price == null || can(regex("^[0-9]+(\\.[0-9]{1,6})?$", var.worker_spot_max_price))
    error_message = "The worker_spot_max_price must be null or a price in USD such as 0.0125."
  }

  validation {
    condition     = var.worker_spot_max_price == null || var.worker_spot
    error_message = "The worker_spot_max_price caps spot workers only: set worker_spot = true too."
  }
}
