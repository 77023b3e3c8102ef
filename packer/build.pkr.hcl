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

  # The spot workers' exit (docs/swarm.md, "Spot workers"): the notice poller a
  # spot worker runs, the reaper a manager runs. Installed, not enabled: the
  # swarm step enables the one a node's role needs, with worker_spot only.
  provisioner "file" {
    sources = [
      "${var.scripts_dir}/spot-notice.sh",
      "${var.scripts_dir}/spot-reaper.sh",
      "${var.scripts_dir}/systemd/swarmforge-spot-notice.service",
      "${var.scripts_dir}/systemd/swarmforge-spot-reaper.service",
    ]
    destination = "/tmp/"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Path }}"
    inline = [
      "install -m 0755 /tmp/spot-notice.sh /usr/local/sbin/swarmforge-spot-notice",
      "install -m 0755 /tmp/spot-reaper.sh /usr/local/sbin/swarmforge-spot-reaper",
      "install -m 0644 /tmp/swarmforge-spot-notice.service /tmp/swarmforge-spot-reaper.service /etc/systemd/system/",
      "rm -f /tmp/spot-notice.sh /tmp/spot-reaper.sh /tmp/swarmforge-spot-notice.service /tmp/swarmforge-spot-reaper.service",
    ]
  }

  # The ECR credential helper (private images with the instance role's rights)
  # and the NFS client (the cluster's EFS file system): scripts/install-aws-helpers.sh.
  provisioner "file" {
    source      = "${var.scripts_dir}/install-aws-helpers.sh"
    destination = "/tmp/install-aws-helpers.sh"
  }

  provisioner "shell" {
    environment_vars = ["SSH_USER=${var.ssh_username}"]
    execute_command  = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline           = ["bash /tmp/install-aws-helpers.sh", "rm -f /tmp/install-aws-helpers.sh"]
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
