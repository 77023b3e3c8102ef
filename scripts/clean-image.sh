#!/usr/bin/env bash
# Leave nothing of the build in a baked image, the way well-kept base images end
# (chef/bento's cleanup scripts, Canonical's cloud image builds): no identity that
# every machine booted from the image would share, no access or trace of the build.
#
#   clean-image.sh [ROOT]
#
# It runs last in a bake, as root: packer/build.pkr.hcl runs it with ROOT=/ on the
# build instance; packer/local/ runs it on the sandbox builder host with ROOT set to
# that host's dir and the overrides below mapped onto its files (a sandbox host is
# a network namespace, not a chroot: its / is this machine's, never to be cleaned).
#
# Every path it touches lies under ROOT, and it never follows a link out of ROOT.
# What acts on a running machine (systemctl, cloud-init, apt-get) runs only when
# ROOT is /; under any other root, or where the command is missing, the same files
# are removed instead. Safe to run again.
#
# Inputs (the argument wins over ROOT; each override must lie under ROOT):
#   ROOT              the image's root directory; default /
#   DOCKER_DATA_ROOT  Docker's data root; default ROOT/var/lib/docker
#   DOCKER_KEY_FILE   the engine's identity key of Docker < 23; default ROOT/etc/docker/key.json
#   DOCKER_PIDFILE    dockerd's pidfile; default ROOT/var/run/docker.pid
#   SSH_HOST_KEY_DIR  the dir of sshd's host keys (ssh_host_*); default ROOT/etc/ssh
#   HOME_DIRS         homes whose authorized_keys and shell history go, colon-separated;
#                     default ROOT/root and every dir of ROOT/home
#   TMP_DIRS          scratch dirs to empty, colon-separated; default ROOT/tmp:ROOT/var/tmp
set -euo pipefail

# Seconds dockerd gets to stop after SIGTERM before the clean fails.
readonly DOCKER_STOP_SECONDS=60

fail() {
  echo "clean-image: $*" >&2
  exit 2
}

[[ $# -le 1 ]] || fail "usage: clean-image.sh [ROOT]"
root="${1:-${ROOT:-/}}"
[[ "${root}" == /* ]] || fail "ROOT must be an absolute path, got '${root}'"
[[ -d "${root}" ]] || fail "ROOT '${root}' is not a directory"
root="$(cd -- "${root}" && pwd -P)"
if [[ "${root}" == / && "${EUID}" -ne 0 ]]; then
  fail "must run as root (sudo) to clean /"
fi
# "" for /, so that "${base}/etc" is /etc there and ROOT/etc elsewhere.
base="${root%/}"

# True when path $1 resolves, links followed, to ROOT or below it.
inside_root() {
  local resolved
  resolved="$(realpath -m -- "$1")"
  [[ "${root}" == / || "${resolved}" == "${root}" || "${resolved}" == "${root}"/* ]]
}

# An override must be an absolute path under ROOT.
check_override() {
  local name="$1" value="$2"
  if [[ "${value}" != /* ]] || ! inside_root "${value}"; then
    fail "${name} must be an absolute path under ROOT '${root}', got '${value}'"
  fi
}

for name in DOCKER_DATA_ROOT DOCKER_KEY_FILE DOCKER_PIDFILE SSH_HOST_KEY_DIR; do
  if [[ -n "${!name:-}" ]]; then
    check_override "${name}" "${!name}"
  fi
done
data_root="${DOCKER_DATA_ROOT:-${base}/var/lib/docker}"
key_file="${DOCKER_KEY_FILE:-${base}/etc/docker/key.json}"
pidfile="${DOCKER_PIDFILE:-${base}/var/run/docker.pid}"
ssh_dir="${SSH_HOST_KEY_DIR:-${base}/etc/ssh}"

home_dirs=()
if [[ -n "${HOME_DIRS:-}" ]]; then
  IFS=: read -r -a home_dirs <<<"${HOME_DIRS}"
else
  home_dirs=("${base}/root")
  for home in "${base}"/home/*; do
    if [[ -d "${home}" ]]; then
      home_dirs+=("${home}")
    fi
  done
fi
tmp_dirs=()
IFS=: read -r -a tmp_dirs <<<"${TMP_DIRS:-${base}/tmp:${base}/var/tmp}"
for name in HOME_DIRS TMP_DIRS; do
  IFS=: read -r -a given <<<"${!name:-}"
  for dir in "${given[@]}"; do
    check_override "${name}" "${dir}"
  done
done

# True when this cleans the machine it runs on and command $1 exists.
on_this_machine() {
  [[ "${root}" == / ]] && command -v "$1" >/dev/null
}

# Whether $1 exists (a dangling link too) where this run may change it: its dir lies
# inside the root. One that leads out is said, and left alone.
in_reach() {
  local path="$1"
  [[ -e "${path}" || -L "${path}" ]] || return 1
  if ! inside_root "$(dirname -- "${path}")"; then
    echo "    left alone: ${path} leads out of ${root}"
    return 1
  fi
}

# Remove $1 (a file, a link or a dir tree; a link is removed, never followed).
remove() {
  local path="$1"
  in_reach "${path}" || return 0
  rm -rf -- "${path}"
  echo "    removed ${path}"
}

# Make $1, where it exists, an empty file in place (a link is replaced, never followed).
empty_file() {
  local path="$1"
  in_reach "${path}" || return 0
  if [[ -L "${path}" || ! -f "${path}" ]]; then
    rm -rf -- "${path}"
    : >"${path}"
  elif [[ -s "${path}" ]]; then
    truncate -s 0 -- "${path}"
  else
    return 0
  fi
  echo "    emptied ${path}"
}

# Remove what dir $1 holds, but the names matching the patterns after it.
empty_dir() {
  local dir="$1" pattern entries
  shift
  [[ -d "${dir}" ]] || return 0
  if ! inside_root "${dir}"; then
    echo "    left alone: ${dir} leads out of ${root}"
    return 0
  fi
  dir="$(realpath -- "${dir}")"
  local keep=()
  for pattern in "$@"; do
    keep+=(! -name "${pattern}")
  done
  entries="$(find "${dir}" -mindepth 1 -maxdepth 1 "${keep[@]}" -printf . | wc -c)"
  [[ "${entries}" -gt 0 ]] || return 0
  find "${dir}" -mindepth 1 -maxdepth 1 "${keep[@]}" -exec rm -rf -- {} +
  echo "    emptied ${dir}: ${entries} removed"
}

# True while process $1 exists and is not a zombie.
running() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}

# The pid in DOCKER_PIDFILE when it is this root's running dockerd: named dockerd,
# and, under another root, started with this data root (a pid may have been reused).
root_dockerd() {
  local pid arg args=()
  [[ -f "${pidfile}" ]] || return 1
  pid="$(tr -dc 0-9 <"${pidfile}")"
  [[ -n "${pid}" ]] && running "${pid}" || return 1
  [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == dockerd ]] || return 1
  if [[ "${root}" != / ]]; then
    mapfile -d '' args <"/proc/${pid}/cmdline" 2>/dev/null || return 1
    for arg in "${args[@]}"; do
      if [[ "${arg}" == "${data_root}" || "${arg}" == "--data-root=${data_root}" ]]; then
        echo "${pid}"
        return 0
      fi
    done
    return 1
  fi
  echo "${pid}"
}

echo "==> Stopping Docker, so that it writes nothing once its state is gone"
if on_this_machine systemctl && [[ -d /run/systemd/system ]]; then
  units=()
  for unit in docker.socket docker.service; do
    if systemctl cat "${unit}" >/dev/null 2>&1; then
      units+=("${unit}")
    fi
  done
  if [[ "${#units[@]}" -gt 0 ]]; then
    # The socket too: a client's call would otherwise start the service again.
    systemctl stop "${units[@]}"
    echo "    stopped ${units[*]}"
  fi
fi
if pid="$(root_dockerd)"; then
  kill -TERM "${pid}"
  deadline=$((SECONDS + DOCKER_STOP_SECONDS))
  while running "${pid}"; do
    ((SECONDS < deadline)) || fail "dockerd (pid ${pid}) did not stop within ${DOCKER_STOP_SECONDS}s"
    sleep 0.1
  done
  echo "    stopped dockerd (pid ${pid})"
fi

echo "==> Removing Docker's swarm state and engine identity (each node makes its own)"
remove "${data_root}/swarm"
remove "${data_root}/engine-id"
remove "${key_file}"

echo "==> Removing the SSH host keys (made anew on first boot)"
for key in "${ssh_dir}"/ssh_host_*; do
  remove "${key}"
done

echo "==> Emptying the machine id (made anew on first boot)"
empty_file "${base}/etc/machine-id"
# D-Bus's copy: a link to it, as Ubuntu ships it, so that both stay one id.
dbus_id="${base}/var/lib/dbus/machine-id"
if [[ -e "${dbus_id}" && ! -L "${dbus_id}" ]] && inside_root "$(dirname -- "${dbus_id}")"; then
  rm -f -- "${dbus_id}"
  ln -s /etc/machine-id "${dbus_id}"
  echo "    linked ${dbus_id} to /etc/machine-id"
fi

echo "==> Resetting cloud-init, so that the image's instances boot as a first boot"
if on_this_machine cloud-init; then
  cloud-init clean --logs
else
  # What `cloud-init clean --logs` removes: its state but the seed, and its logs.
  empty_dir "${base}/var/lib/cloud" seed
  for log in "${base}"/var/log/cloud-init.log* "${base}"/var/log/cloud-init-output.log*; do
    remove "${log}"
  done
fi

echo "==> Clearing the build's SSH access and shell history"
for home in "${home_dirs[@]}"; do
  empty_file "${home}/.ssh/authorized_keys"
  remove "${home}/.bash_history"
done

echo "==> Removing apt's caches and package lists"
if on_this_machine apt-get; then
  apt-get clean
else
  # What `apt-get clean` removes.
  for cached in "${base}"/var/cache/apt/archives/*.deb "${base}"/var/cache/apt/archives/partial/* \
    "${base}"/var/cache/apt/*.bin; do
    remove "${cached}"
  done
fi
empty_dir "${base}/var/lib/apt/lists"

echo "==> Emptying the scratch dirs the build used"
for dir in "${tmp_dirs[@]}"; do
  # Not the private /tmp of services still running (systemd, snapd).
  empty_dir "${dir}" 'systemd-private-*' snap-private-tmp
done
