terraform {
  # 1.0 is the oldest build we can install offline; the S3 backend rendering
  # adapts to the version found (see swarmforge/backend.py).
  required_version = ">= 1.0"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1, < 4.0"
    }
  }
}
