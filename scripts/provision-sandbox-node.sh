#!/usr/bin/env bash
# Provision a sandbox builder host into a local node image: Packer's null builder
# runs it there over SSH (packer/local/), and swarmforge captures the host after.
#
# What install-docker.sh does for the AMI, where it applies to a sandbox host:
# the Docker Engine must match the pinned version (the sandbox cannot install
# another one, so it is checked), the same daemon settings, and the images every
# node holds (there is no registry to pull from). Safe to run again.
#
# Inputs (environment):
#   DOCKER_VERSION          version prefix the host's Docker Engine must match: 20, 20.10 or 20.10.24
#   DOCKER_VERSION_MIN      optional lowest version within that prefix, e.g. 20.10.5
#   DOCKER_DAEMON_SETTINGS  the daemon settings, a JSON object (packer/variables.pkr.hcl)
#   DAEMON_SETTINGS_FILE    where this host keeps them: its /etc/docker/daemon.json
#   IMAGES_DIR              a directory of `docker save` archives to load; each is removed once loaded
#   DOCKER_HOST             this host's Docker socket (its sshd sets it for every session)
set -euo pipefail

readonly VERSION_PATTERN='^[0-9]+(\.[0-9]+){0,2}$'

fail() {
  echo "provision-sandbox-node: $*" >&2
  exit 2
}

DOCKER_VERSION="${DOCKER_VERSION:-}"
DOCKER_VERSION_MIN="${DOCKER_VERSION_MIN:-}"
DOCKER_DAEMON_SETTINGS="${DOCKER_DAEMON_SETTINGS:-}"
DAEMON_SETTINGS_FILE="${DAEMON_SETTINGS_FILE:-}"
IMAGES_DIR="${IMAGES_DIR:-}"

[[ "${DOCKER_VERSION}" =~ ${VERSION_PATTERN} ]] \
  || fail "DOCKER_VERSION must be a version prefix like 20.10 or 20.10.24, got '${DOCKER_VERSION}'"
if [[ -n "${DOCKER_VERSION_MIN}" && ! "${DOCKER_VERSION_MIN}" =~ ${VERSION_PATTERN} ]]; then
  fail "DOCKER_VERSION_MIN must be empty or a version like 20.10.5, got '${DOCKER_VERSION_MIN}'"
fi
[[ "${DOCKER_DAEMON_SETTINGS}" == "{"*"}" ]] \
  || fail "DOCKER_DAEMON_SETTINGS must be a JSON object, got '${DOCKER_DAEMON_SETTINGS}'"
[[ "${DAEMON_SETTINGS_FILE}" == /* ]] || fail "DAEMON_SETTINGS_FILE must be an absolute path"
[[ -d "${IMAGES_DIR}" ]] || fail "IMAGES_DIR '${IMAGES_DIR}' is not a directory"
[[ "${DOCKER_HOST:-}" == unix://* ]] || fail "DOCKER_HOST must name this host's Docker socket"

# True when version $1 is $2 or newer.
at_least() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

echo "==> Checking the Docker Engine: ${DOCKER_VERSION}.x${DOCKER_VERSION_MIN:+ (>= ${DOCKER_VERSION_MIN})}"
server="$(docker version --format '{{.Server.Version}}')"
upstream="${server%%[+~-]*}" # 20.10.24+dfsg1 -> 20.10.24
if [[ "${upstream}" != "${DOCKER_VERSION}" && "${upstream}" != "${DOCKER_VERSION}".* ]]; then
  fail "the host runs Docker Engine ${server}, not ${DOCKER_VERSION}.x"
fi
if [[ -n "${DOCKER_VERSION_MIN}" ]] && ! at_least "${upstream}" "${DOCKER_VERSION_MIN}"; then
  fail "the host runs Docker Engine ${server}, older than ${DOCKER_VERSION_MIN}"
fi
echo "    Docker Engine ${server}"

echo "==> Writing the daemon settings (json-file logs, rotated) to ${DAEMON_SETTINGS_FILE}"
printf '%s\n' "${DOCKER_DAEMON_SETTINGS}" >"${DAEMON_SETTINGS_FILE}.partial"
mv "${DAEMON_SETTINGS_FILE}.partial" "${DAEMON_SETTINGS_FILE}"

echo "==> Loading the images every node holds"
shopt -s nullglob
archives=("${IMAGES_DIR}"/*.tar)
[[ "${#archives[@]}" -gt 0 ]] || fail "no image archives (*.tar) in ${IMAGES_DIR}"
for archive in "${archives[@]}"; do
  docker load -q -i "${archive}"
  rm -f "${archive}"
done
