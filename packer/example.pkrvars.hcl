# An example of the per-build variables swarmforge renders for `invoke bake`
# (swarmforge/templates/bake.pkrvars.hcl.j2); CI validates the template with it.
# Paths are relative to the directory Packer runs in: the repository root.
cluster             = "example"
region              = "us-east-1"
ami_regions         = ["eu-west-1"]
instance_type       = "t3.small"
ubuntu_owner        = "099720109477"
git_commit          = "0000000000000000000000000000000000000000"
docker_version      = "27.3"
docker_version_min  = ""
docker_version_spec = "27.3.*"
scripts_dir         = "scripts"
swarmforge_run_id   = "0b6f3e52-5a4e-4d2b-9c61-2f0a8d3b7e19"
