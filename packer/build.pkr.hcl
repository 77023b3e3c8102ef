build {
  sources = ["source.amazon-ebs.ubuntu_docker"]

  # apt and cloud-init race on first boot: wait until cloud-init is done.
  # Exit 2 means done with recoverable errors (cloud-init >= 23.4): not ours to fail on.
  provisioner "shell" {
    inline           = ["cloud-init status --wait"]
    valid_exit_codes = [0, 2]
  }

  provisioner "file" {
    source      = "${var.scripts_dir}/install-docker.sh"
    destination = "/tmp/install-docker.sh"
  }

  provisioner "shell" {
    environment_vars = [
      "DOCKER_VERSION=${var.docker_version}",
      "DOCKER_VERSION_MIN=${var.docker_version_min}",
      "DOCKER_DAEMON_SETTINGS=${local.docker_daemon_settings}",
      "SSH_USER=${var.ssh_username}",
    ]
    # `sudo env VARS...`: the pinned version reaches the script whatever sudoers keeps.
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline          = ["bash /tmp/install-docker.sh", "rm -f /tmp/install-docker.sh"]
  }

  # Last, so that nothing after it leaves a trace: the AMI's instances must each
  # make their own host keys, machine id and Docker engine id, run cloud-init as
  # a first boot (which prints the new host keys to the console), and hold no key
  # of Packer's, apt lists or build files (scripts/clean-image.sh).
  provisioner "shell" {
    environment_vars = ["ROOT=/"]
    execute_command  = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    script           = "${var.scripts_dir}/clean-image.sh"
  }

  # A second, structured record of what was built; swarmforge cross-checks it
  # against the machine-readable output.
  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      cluster        = var.cluster
      git_commit     = var.git_commit
      docker_version = var.docker_version_spec
      # Proves the manifest is this run's: swarmforge compares it with the one it passed.
      swarmforge_run_id = var.swarmforge_run_id
    }
  }
}
