# Kept alone on purpose: Packer 1.6 does not know `required_plugins` and rejects
# this block, so swarmforge validates the other files without it on old Packer.
packer {
  required_version = ">= 1.7.0"

  required_plugins {
    amazon = {
      version = ">= 1.2.1"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
