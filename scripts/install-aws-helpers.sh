#!/usr/bin/env bash
# The AMI's AWS helpers (issue 20), installed after install-docker.sh:
# - the ECR credential helper, set as the docker CLI's credential store for root
#   and SSH_USER: `docker service create <account>.dkr.ecr.<region>.amazonaws.com/
#   app:1 --with-registry-auth`, run on a manager, pulls with the instance role's
#   rights (terraform/aws iam.tf) and no `docker login`;
# - the NFS client, for the cluster's EFS file system (efs = true), which
#   swarm-node.sh mounts at /mnt/efs. Not amazon-efs-utils: Ubuntu does not
#   package it (it builds from source, with Rust); swarm-node.sh mounts over TLS
#   when an image of yours has it.
#
# Run as root while baking the AMI (packer/build.pkr.hcl); safe to run again:
# packages already installed and settings already in place change nothing.
#
# Inputs (environment):
#   SSH_USER   existing login user whose docker CLI uses the helper too
set -euo pipefail

readonly PACKAGES=(amazon-ecr-credential-helper nfs-common)
readonly HELPER=docker-credential-ecr-login
# As install-docker.sh: apt-get waits for dpkg's locks instead of failing on them.
readonly APT_WAIT_SECONDS=600

fail() {
  echo "install-aws-helpers: $*" >&2
  exit 2
}

apt_get() {
  apt-get -o DPkg::Lock::Timeout="${APT_WAIT_SECONDS}" "$@"
}

install_packages() {
  local package missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  if (( ${#missing[@]} == 0 )); then
    echo "install-aws-helpers: ${PACKAGES[*]} already installed"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_get update -q
  apt_get install -y -q --no-install-recommends "${missing[@]}"
}

# credsStore, not credHelpers per registry: the account and region of the
# images are not known while baking. For a registry that is not ECR's the
# helper finds nothing and the CLI goes on without credentials (public pulls
# work); a `docker login` elsewhere must then use a config of its own
# (DOCKER_CONFIG). Every other setting of an existing config is kept.
use_ecr_helper() {
  local user="$1" home="$2" dir group
  [[ -n "$home" && -d "$home" ]] || fail "no home directory for ${user}"
  group="$(id -gn "$user")"
  dir="${home}/.docker"
  install -d -m 0700 -o "$user" -g "$group" "$dir"
  python3 - "${dir}/config.json" <<'PY'
import json, os, sys
path = sys.argv[1]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
if config.get("credsStore") != "ecr-login":
    config["credsStore"] = "ecr-login"
    with open(path + ".new", "w") as new:
        json.dump(config, new, indent=2, sort_keys=True)
        new.write("\n")
    os.replace(path + ".new", path)
PY
  chown "${user}:${group}" "${dir}/config.json"
  chmod 0600 "${dir}/config.json"
  echo "install-aws-helpers: ${user}'s docker CLI takes ECR credentials from the instance role"
}

home_of() {
  getent passwd "$1" | cut -d: -f6
}

main() {
  SSH_USER="${SSH_USER:-}"
  [[ -n "${SSH_USER}" ]] || fail "SSH_USER must name the login user"
  id -u "${SSH_USER}" >/dev/null 2>&1 || fail "SSH_USER '${SSH_USER}' does not exist"
  [[ "${EUID}" -eq 0 ]] || fail "must run as root (sudo)"

  install_packages
  command -v "${HELPER}" >/dev/null || fail "${HELPER} is missing after installing ${PACKAGES[0]}"
  command -v mount.nfs4 >/dev/null || [[ -x /sbin/mount.nfs4 ]] || fail "mount.nfs4 is missing after installing nfs-common"
  use_ecr_helper root "$(home_of root)"
  [[ "${SSH_USER}" == root ]] || use_ecr_helper "${SSH_USER}" "$(home_of "${SSH_USER}")"
}

# Sourced (tests), only the functions are defined.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
