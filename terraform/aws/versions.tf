terraform {
  # 1.10 brings S3-native state locking (use_lockfile), so no DynamoDB table is
  # needed, and cross-variable validation (1.9).
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  # Partial on purpose: bucket, key and region come from the rendered backend
  # settings at `terraform init` (see swarmforge/backend.py).
  backend "s3" {}
}
