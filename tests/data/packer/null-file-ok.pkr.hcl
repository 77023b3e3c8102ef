source "null" "first" {
  communicator = "none"
}

source "file" "second" {
  content = "hello, world"
  target  = "out/second.txt"
}

build {
  sources = ["source.null.first", "source.file.second"]

  provisioner "shell-local" {
    inline = ["echo installing docker, step 1", "echo 'a line with, commas'"]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      cluster = "demo"
    }
  }
}
