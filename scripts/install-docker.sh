#!/usr/bin/env bash
# Install a pinned Docker Engine from Docker's apt repository on Ubuntu.
#
# Run as root while baking the AMI (Packer) and safe to run again: every step
# checks before it changes anything.
#
# Inputs (environment):
#   DOCKER_VERSION      version prefix to pin: 27, 27.3 or 27.3.1
#   DOCKER_VERSION_MIN  optional lowest version within that prefix, e.g. 27.3 (for ~=27.3)
#   DOCKER_DAEMON_SETTINGS  optional daemon.json content, a JSON object (Packer passes
#                       packer/variables.pkr.hcl's docker_daemon_settings); default:
#                       json-file logs rotated at 10m, 5 files
#   SSH_USER            existing login user to add to the docker group
set -euo pipefail

readonly DOCKER_GPG_URL="https://download.docker.com/linux/ubuntu/gpg"
readonly DOCKER_GPG_FINGERPRINT="9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
readonly KEYRING="/etc/apt/keyrings/docker.asc"
readonly SOURCES_LIST="/etc/apt/sources.list.d/docker.list"
readonly DAEMON_JSON="/etc/docker/daemon.json"
readonly VERSION_PATTERN='^[0-9]+(\.[0-9]+){0,2}$'
readonly DEFAULT_DAEMON_SETTINGS='{"log-driver":"json-file","log-opts":{"max-file":"5","max-size":"10m"}}'
# Seconds to wait for Ubuntu's own apt jobs, then for each apt lock: a fresh
# instance's first unattended upgrade may hold them for minutes.
readonly APT_WAIT_SECONDS=600

fail() {
  echo "install-docker: $*" >&2
  exit 2
}

DOCKER_VERSION="${DOCKER_VERSION:-}"
DOCKER_VERSION_MIN="${DOCKER_VERSION_MIN:-}"
DOCKER_DAEMON_SETTINGS="${DOCKER_DAEMON_SETTINGS:-${DEFAULT_DAEMON_SETTINGS}}"
SSH_USER="${SSH_USER:-}"

[[ "${DOCKER_VERSION}" =~ ${VERSION_PATTERN} ]] \
  || fail "DOCKER_VERSION must be a version prefix like 27.3 or 27.3.1, got '${DOCKER_VERSION}'"
if [[ -n "${DOCKER_VERSION_MIN}" && ! "${DOCKER_VERSION_MIN}" =~ ${VERSION_PATTERN} ]]; then
  fail "DOCKER_VERSION_MIN must be empty or a version like 27.3, got '${DOCKER_VERSION_MIN}'"
fi
[[ "${DOCKER_DAEMON_SETTINGS}" == "{"*"}" ]] \
  || fail "DOCKER_DAEMON_SETTINGS must be a JSON object, got '${DOCKER_DAEMON_SETTINGS}'"
[[ -n "${SSH_USER}" ]] || fail "SSH_USER must name the login user"
id -u "${SSH_USER}" >/dev/null 2>&1 || fail "SSH_USER '${SSH_USER}' does not exist"
[[ "${EUID}" -eq 0 ]] || fail "must run as root (sudo)"

export DEBIAN_FRONTEND=noninteractive

# apt-get waits for dpkg's locks instead of failing on them (apt-mark below too).
apt_get() {
  apt-get -o DPkg::Lock::Timeout="${APT_WAIT_SECONDS}" "$@"
}

# On first boot apt-daily.service (apt-get update) and apt-daily-upgrade.service
# (unattended-upgrade) start on their own; wait, bounded, until neither runs.
# Not unattended-upgrades.service: that is the shutdown hook, active all the time.
# They are oneshot units, "activating" while they run, which `systemctl is-active`
# does not count as active: so the states are read, not the exit status.
wait_for_apt_daily() {
  if [[ ! -d /run/systemd/system ]]; then
    return 0 # no systemd (a sandbox host): no apt timers either
  fi
  local deadline=$((SECONDS + APT_WAIT_SECONDS)) states announced=false
  while true; do
    states="$(systemctl is-active apt-daily.service apt-daily-upgrade.service || true)"
    grep -qxE 'active|activating|deactivating|reloading|refreshing' <<<"${states}" || return 0
    if [[ "${announced}" == false ]]; then
      echo "==> Waiting for Ubuntu's own apt jobs (apt-daily, unattended upgrades) to finish"
      announced=true
    fi
    if ((SECONDS >= deadline)); then
      echo "    still running after ${APT_WAIT_SECONDS}s; going on, apt-get waits for the locks"
      return 0
    fi
    sleep 5
  done
}

# Prints the newest apt version of docker-ce (e.g. 5:27.3.1-1~ubuntu.24.04~noble)
# whose upstream part (27.3.1) is in the DOCKER_VERSION series and not below
# DOCKER_VERSION_MIN. apt-cache madison lists the newest first.
pick_docker_version() {
  local apt_version upstream
  while read -r apt_version; do
    upstream="${apt_version#*:}"
    upstream="${upstream%%-*}"
    if [[ "${upstream}" != "${DOCKER_VERSION}" && "${upstream}" != "${DOCKER_VERSION}".* ]]; then
      continue
    fi
    if [[ -n "${DOCKER_VERSION_MIN}" ]] \
      && ! dpkg --compare-versions "${upstream}" ge "${DOCKER_VERSION_MIN}"; then
      continue
    fi
    echo "${apt_version}"
    return 0
  done < <(apt-cache madison docker-ce | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
  return 1
}

# Writes stdin to $1 only when the content differs; returns 1 when unchanged.
write_if_changed() {
  local target="$1" wanted current=""
  wanted="$(cat)"
  if [[ -f "${target}" ]]; then
    current="$(<"${target}")"
  fi
  if [[ "${current}" == "${wanted}" ]]; then
    return 1
  fi
  printf '%s\n' "${wanted}" >"${target}"
}

wait_for_apt_daily

echo "==> Installing apt prerequisites"
apt_get update -q
apt_get install -y -q ca-certificates curl gnupg

echo "==> Installing Docker's apt signing key"
install -m 0755 -d "$(dirname "${KEYRING}")"
key_file="$(mktemp)"
trap 'rm -f "${key_file}"' EXIT
curl -fsSL "${DOCKER_GPG_URL}" -o "${key_file}"
# Refuse a key that is not Docker's, whatever the download returned.
fingerprints="$(gpg --show-keys --with-colons "${key_file}" | awk -F: '$1 == "fpr" { print $10 }')"
grep -qx "${DOCKER_GPG_FINGERPRINT}" <<<"${fingerprints}" \
  || fail "downloaded key is not Docker's (${DOCKER_GPG_FINGERPRINT})"
install -m 0644 "${key_file}" "${KEYRING}"

echo "==> Adding Docker's apt repository"
codename="$(awk -F= '$1 == "VERSION_CODENAME" { print $2 }' /etc/os-release)"
[[ -n "${codename}" ]] || fail "cannot read VERSION_CODENAME from /etc/os-release"
arch="$(dpkg --print-architecture)"
write_if_changed "${SOURCES_LIST}" <<EOF || true
deb [arch=${arch} signed-by=${KEYRING}] https://download.docker.com/linux/ubuntu ${codename} stable
EOF
apt_get update -q

echo "==> Choosing Docker Engine ${DOCKER_VERSION}.x${DOCKER_VERSION_MIN:+ (>= ${DOCKER_VERSION_MIN})}"
apt_version="$(pick_docker_version)" \
  || fail "no docker-ce ${DOCKER_VERSION}.x${DOCKER_VERSION_MIN:+ >= ${DOCKER_VERSION_MIN}} in Docker's repository"
echo "    picked docker-ce ${apt_version}"

echo "==> Installing Docker Engine, containerd and the compose plugin"
apt_get install -y -q --allow-change-held-packages \
  "docker-ce=${apt_version}" "docker-ce-cli=${apt_version}" \
  containerd.io docker-buildx-plugin docker-compose-plugin
# Unattended upgrades must not move the engine off the version this AMI promises.
apt-mark -o DPkg::Lock::Timeout="${APT_WAIT_SECONDS}" hold docker-ce docker-ce-cli >/dev/null

echo "==> Adding ${SSH_USER} to the docker group"
if id -nG "${SSH_USER}" | tr ' ' '\n' | grep -qx docker; then
  echo "    already a member"
else
  usermod -aG docker "${SSH_USER}"
fi

echo "==> Writing ${DAEMON_JSON} (json-file logs, rotated)"
install -m 0755 -d "$(dirname "${DAEMON_JSON}")"
daemon_changed=false
write_if_changed "${DAEMON_JSON}" <<<"${DOCKER_DAEMON_SETTINGS}" && daemon_changed=true

echo "==> Enabling Docker at boot"
systemctl enable --now docker.service containerd.service
if [[ "${daemon_changed}" == true ]]; then
  systemctl restart docker.service
fi
docker version --format 'Docker Engine {{.Server.Version}} is installed'

echo "==> Cleaning apt caches"
apt_get clean
rm -rf /var/lib/apt/lists/*
