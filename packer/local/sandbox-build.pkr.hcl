build {
  sources = ["source.null.sandbox_node"]

  # Into the builder's 0700 provision dir, never the shared /tmp (sandbox hosts
  # share this machine's file system).
  provisioner "file" {
    sources     = var.preload_images
    destination = "${var.builder_dir}/provision/"
  }

  provisioner "shell" {
    remote_folder = "${var.builder_dir}/provision"
    environment_vars = [
      "DOCKER_VERSION=${var.docker_version}",
      "DOCKER_VERSION_MIN=${var.docker_version_min}",
      "DOCKER_DAEMON_SETTINGS=${local.docker_daemon_settings}",
      "DAEMON_SETTINGS_FILE=${var.builder_dir}/daemon-settings.json",
      "IMAGES_DIR=${var.builder_dir}/provision",
    ]
    script = "${var.scripts_dir}/provision-sandbox-node.sh"
  }

  # Last, as on the AMI: scripts/clean-image.sh on the builder's own files. Its
  # root is the builder's dir, never / (a sandbox host shares this machine's file
  # system), and the paths a machine keeps under /etc and /var map onto the
  # builder's (swarmforge/targets/local/host.py): its dockerd (stopped first),
  # data root and engine key, its SSH host key, its home, its provision dir.
  provisioner "shell" {
    remote_folder = "${var.builder_dir}/provision"
    environment_vars = [
      "ROOT=${var.builder_dir}",
      "DOCKER_DATA_ROOT=${var.builder_dir}/data",
      "DOCKER_KEY_FILE=${var.builder_dir}/key.json",
      "DOCKER_PIDFILE=${var.builder_dir}/docker.pid",
      "SSH_HOST_KEY_DIR=${var.builder_dir}",
      "HOME_DIRS=${var.builder_dir}/home",
      "TMP_DIRS=${var.builder_dir}/provision",
    ]
    script = "${var.scripts_dir}/clean-image.sh"
  }

  # A second, structured record of the run; swarmforge cross-checks it against
  # the machine-readable output and keeps its run id as the image's provenance.
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
