"""Images the sandbox preloads into every new node, as an AMI carries its images.

The sandbox has no registry, so a node must hold an image before it is given a
task of it. The sample workload image is made from Debian's ``busybox-static``
and written straight in ``docker save`` format (one layer, a config, a manifest),
so no daemon is needed to make it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from swarmforge.errors import SandboxError
from swarmforge.private_files import PRIVATE_FILE, private_dirs

SAMPLE_IMAGE = "swarmforge/sample:1"
BUSYBOX = Path("/bin/busybox")
# The applets a workload needs; busybox answers to any name it is linked as.
APPLETS = ("sh", "sleep", "nc", "echo", "cat", "ls", "hostname", "true", "wget", "httpd")


def sample_image(dest: Path, tag: str = SAMPLE_IMAGE) -> Path:
    """Write the busybox sample image as a ``docker load``-able tar at ``dest``."""
    if not BUSYBOX.exists():
        raise SandboxError(f"{BUSYBOX} is missing: install busybox-static (scripts/setup-host.sh)")
    layer = _layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "created": "1970-01-01T00:00:00Z",  # fixed: the same busybox gives the same image id
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"swarmforge: {BUSYBOX} from busybox-static"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": ["layer/layer.tar"]}]).encode()
    private_dirs(dest.parent)  # every host loads what is here: nobody else may put it there
    partial = dest.with_suffix(".partial")
    with tarfile.open(partial, "w") as image:
        for name, data in (("layer/layer.tar", layer), (config_name, config),
                           ("manifest.json", manifest)):
            _add(image, name, data)
    partial.chmod(PRIVATE_FILE)  # tarfile's went through the umask
    partial.replace(dest)
    return dest


def _layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as layer:
        _add(layer, "bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "busybox", 0
            layer.addfile(link)
        for empty in ("tmp", "proc", "sys", "dev", "etc"):
            folder = tarfile.TarInfo(empty)
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o1777 if empty == "tmp" else 0o755, 0
            layer.addfile(folder)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))

