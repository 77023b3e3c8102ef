source "null" "failing" {
  communicator = "none"
}

build {
  sources = ["source.null.failing"]

  provisioner "shell-local" {
    inline = ["echo about to fail", "exit 3"]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
