terraform {
  # 1.10 brings S3-native state locking (use_lockfile), so no DynamoDB table is
  # needed, and cross-variable validation (1.9).
  required_version = ">= 1.10"

  # One exact provider version, so every machine (and the scheduled rebuild)
  # plans with the same code: 6.64.0 was the newest 6.x release when pinned.
  # Upgrade on purpose: change it here, run `terraform init -upgrade` and
  # `terraform providers lock` for the platforms you run on, read the changelog.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.64.0"
    }
    # The swarm step (join.tf): init or join over SSH once a node exists.
    null = {
      source  = "hashicorp/null"
      version = "3.2.4"
    }
  }

  # Partial on purpose: bucket, key and region come from the rendered backend
  # settings at `terraform init` (see swarmforge/backend.py).
  backend "s3" {}
}
