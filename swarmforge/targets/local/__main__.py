"""The ``sandbox`` command that Terraform's local-exec provisioners run.

    python -m swarmforge.targets.local SANDBOX_DIR host-up HOSTNAME ADDRESS [--image DIR | --bare]
    python -m swarmforge.targets.local SANDBOX_DIR host-down HOSTNAME
    python -m swarmforge.targets.local SANDBOX_DIR docker-stop|docker-start HOSTNAME
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from swarmforge.errors import SwarmforgeError
from swarmforge.targets.local.host import Host
from swarmforge.targets.local.sandbox import SandboxLayout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sandbox_dir", type=Path)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("host-up", help="create a host (a fresh one, always)")
    up.add_argument("hostname")
    up.add_argument("address")
    boot = up.add_mutually_exclusive_group()
    boot.add_argument("--image", type=Path, help="boot from this local image (a dir of the "
                      "image store); default: load the sandbox's stock images")
    boot.add_argument("--bare", action="store_true", help="load no image (a Packer builder)")
    down = commands.add_parser("host-down", help="remove a host and all it started")
    down.add_argument("hostname")
    for verb in ("docker-stop", "docker-start"):  # what systemctl stop/start docker is on aws
        commands.add_parser(verb, help=f"{verb.split('-')[1]} the host's dockerd").add_argument(
            "hostname")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        host = Host.named(SandboxLayout.load(args.sandbox_dir), args.hostname)
        if args.command == "host-up":
            host.up(args.address, args.image, bare=args.bare)
            booted = f", image {args.image.name}" if args.image else ""
            print(f"host {args.hostname} up at {args.address}{booted} "
                  f"({time.monotonic() - started:.1f}s)")
        elif args.command == "docker-stop":
            host.stop_docker()
        elif args.command == "docker-start":
            host.start_docker()
        else:
            host.down()
            print(f"host {args.hostname} removed ({time.monotonic() - started:.1f}s)")
    except SwarmforgeError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
