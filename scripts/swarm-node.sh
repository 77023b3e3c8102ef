#!/usr/bin/env bash
# Make the node this runs on the first manager of a new swarm, or join it to one.
#
#   swarm-node.sh init ADVERTISE_ADDR [POOL [MASK_LENGTH]]
#                                       docker swarm init (its output, which holds
#                                       the worker token, never leaves the node); with
#                                       POOL (a CIDR), overlay networks take /MASK_LENGTH
#                                       subnets (default 24) of it, not of 10.0.0.0/8
#   swarm-node.sh join REQUEST_FILE     POST a JSON join request to the local Docker
#                                       API; the token stays out of argv and output,
#                                       and the request file is removed whatever happens
#
# Idempotent: a node already in a swarm is left as it is.
#
# Before either, the cluster's optional parts are set up on the node, as the
# swarm step says in the environment (terraform/aws main.tf, node_settings; the
# sandbox sets none, and then nothing here changes):
#   SWARM_NODE_LOG_GROUP, SWARM_NODE_LOG_REGION
#                   containers log to this CloudWatch group through Docker's
#                   awslogs driver (daemon.json; Docker restarts once to take it)
#   SWARM_NODE_EFS  the EFS file system's DNS name: mounted at /mnt/efs from
#                   /etc/fstab (_netdev), over TLS when amazon-efs-utils is
#                   installed, else over NFS 4.1 with AWS's recommended options
#   SWARM_NODE_SPOT=1  spot workers: the exit unit of the node's role (see below)
#   ROOT            where the node's /etc and /mnt are (default /)
# Both are idempotent: settings already in place change nothing and restart
# nothing. They need root: run as root or with password-less sudo (EC2's user).
#
#   swarm-node.sh configure             only that (what init and join do first)
set -euo pipefail

die() { echo "swarm-node: $*" >&2; exit 1; }

# Strip anything that looks like a join token from text we are about to print.
redact() { sed -E 's/SWMTKN-[A-Za-z0-9-]+/SWMTKN-<redacted>/g'; }

docker_socket() {
  local host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  [[ "$host" == unix://* ]] || die "DOCKER_HOST must be a unix socket, not ${host}"
  echo "${host#unix://}"
}

# One field of the node's swarm info (LocalNodeState, ControlAvailable), read from the
# Docker API with curl: `docker info` would start the CLI, which costs several times
# more, and a join asks twice (tens of nodes joining at once share the CPU).
swarm_field() {
  local field="$1" info
  info="$(curl --silent --show-error --unix-socket "$(docker_socket)" http://docker/info)" \
    || die "cannot reach the Docker API"
  [[ "$info" =~ \"${field}\":\"?([A-Za-z-]+) ]] || die "Docker's info says nothing of ${field}"
  echo "${BASH_REMATCH[1]}"
}

swarm_state() { swarm_field LocalNodeState; }

init_swarm() {
  local address="$1" pool="${2:-}" mask="${3:-24}"
  local -a options=(--advertise-addr "$address")
  [[ -n "$address" ]] || die "usage: swarm-node.sh init ADVERTISE_ADDR [POOL [MASK_LENGTH]]"
  if [[ -n "$pool" ]]; then
    [[ "$pool" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || die "POOL must be an IPv4 CIDR, not ${pool}"
    [[ "$mask" =~ ^[0-9]{1,2}$ ]] || die "MASK_LENGTH must be a prefix length, not ${mask}"
    (( 10#$mask >= 10#${pool#*/} && 10#$mask <= 29 )) || die "MASK_LENGTH ${mask} must lie from ${pool#*/} to 29"
    options+=(--default-addr-pool "$pool" --default-addr-pool-mask-length "$mask")
  fi
  # A node in a swarm keeps the pool it was made with: init runs once.
  if [[ "$(swarm_state)" == "active" ]]; then
    echo "already in a swarm: nothing to do"
    return
  fi
  echo "initialising a swarm, advertising ${address}${pool:+, overlay networks from ${pool}}"
  docker swarm init "${options[@]}" >/dev/null
  echo "swarm initialised: this node is its first manager"
}

join_request=""
remove_join_request() { [[ -z "$join_request" ]] || rm -f -- "$join_request"; }
trap remove_join_request EXIT

join_swarm() {
  local request="$1" response status
  [[ -n "$request" ]] || die "usage: swarm-node.sh join REQUEST_FILE"
  join_request="$request"
  [[ -s "$request" ]] || die "no join request at ${request}"
  if [[ "$(swarm_state)" == "active" ]]; then
    echo "already in a swarm: nothing to do"
    return
  fi
  echo "joining the swarm"
  response="$(curl --silent --show-error --unix-socket "$(docker_socket)" \
    -X POST -H 'Content-Type: application/json' --data-binary "@${request}" \
    --write-out '\n%{http_code}' http://docker/swarm/join)" || die "cannot reach the Docker API"
  status="${response##*$'\n'}"
  if [[ "$status" != "200" ]]; then
    die "join refused (HTTP ${status}): $(printf '%s' "${response%$'\n'*}" | redact)"
  fi
  if [[ "$(swarm_field ControlAvailable)" == "true" ]]; then
    echo "joined as manager"
  else
    echo "joined as worker"
  fi
}

# --- the cluster's optional parts ---------------------------------------------------

ROOT="${ROOT:-/}"
DAEMON_JSON="${ROOT%/}/etc/docker/daemon.json"
FSTAB="${ROOT%/}/etc/fstab"
readonly EFS_MOUNT=/mnt/efs
# AWS's recommended NFS options for EFS (its user guide, "Mounting on Linux"):
# hard mounts that retry for long, and a new source port on reconnection.
readonly EFS_NFS_OPTIONS="nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"
# A new mount target's DNS name may take a minute or two to resolve.
readonly EFS_MOUNT_ATTEMPTS=30 EFS_MOUNT_PAUSE=5

as_root() {
  if [[ "${EUID}" -eq 0 ]]; then "$@"; else sudo -n -- "$@"; fi
}

# Put CONTENT at PATH, mode 0644, unless it is there already; says whether it
# changed (exit 0) or not (exit 1). Content, not a pipe: a failure making it
# must stop the script, not read as "unchanged".
install_if_changed() {
  local path="$1" content="$2" draft
  draft="$(mktemp)"
  printf '%s\n' "$content" >"$draft"
  if [[ -f "$path" ]] && cmp -s "$draft" "$path"; then
    rm -f -- "$draft"
    return 1
  fi
  as_root install -D -m 0644 "$draft" "$path" || { rm -f -- "$draft"; die "cannot write ${path}"; }
  rm -f -- "$draft"
}

# daemon.json with the awslogs driver; every other setting of the AMI's kept.
# The json-file options (max-size, max-file) go: awslogs refuses unknown options.
# Non-blocking: a container never stalls on CloudWatch; past the buffer, lines drop.
awslogs_settings() {
  local group="$1" region="$2" tag="$3"
  python3 - "$DAEMON_JSON" "$group" "$region" "$tag" <<'PY'
import json, os, sys
path, group, region, tag = sys.argv[1:]
settings = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
settings["log-driver"] = "awslogs"
settings["log-opts"] = {"awslogs-group": group, "awslogs-region": region, "tag": tag,
                        "mode": "non-blocking", "max-buffer-size": "4m"}
print(json.dumps(settings, indent=2, sort_keys=True))
PY
}

configure_logs() {
  local group="${SWARM_NODE_LOG_GROUP:-}" region="${SWARM_NODE_LOG_REGION:-}" tag settings
  [[ -n "$group" ]] || return 0
  [[ "$group" =~ ^[A-Za-z0-9_./#-]{1,512}$ ]] || die "SWARM_NODE_LOG_GROUP is no log group name: ${group}"
  [[ "$region" =~ ^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$ ]] || die "SWARM_NODE_LOG_REGION is no AWS region: ${region}"
  # One stream per container, named after the node and the container (a swarm
  # task's name holds its service, slot and task id).
  tag="$(hostname)/{{.Name}}"
  settings="$(awslogs_settings "$group" "$region" "$tag")"
  if install_if_changed "$DAEMON_JSON" "$settings"; then
    echo "containers log to CloudWatch group ${group} (${region}): restarting Docker"
    restart_docker
  else
    echo "containers already log to CloudWatch group ${group}"
  fi
}

restart_docker() {
  as_root systemctl restart docker
  local waited=0
  until docker info >/dev/null 2>&1; do
    (( waited++ < 60 )) || die "Docker did not come back within 60 s of its restart"
    sleep 1
  done
}

# The fstab line: efs-utils' TLS mount when it is installed, else plain NFS 4.1.
efs_fstab_line() {
  local host="$1"
  if command -v mount.efs >/dev/null 2>&1 || [[ -x /sbin/mount.efs ]]; then
    echo "${host%%.*}:/ ${EFS_MOUNT} efs _netdev,noresvport,tls 0 0"
  else
    echo "${host}:/ ${EFS_MOUNT} nfs4 ${EFS_NFS_OPTIONS} 0 0"
  fi
}

configure_efs() {
  local host="${SWARM_NODE_EFS:-}" line others attempt=1
  [[ -n "$host" ]] || return 0
  [[ "$host" =~ ^fs-[0-9a-f]{8,40}\.efs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$ ]] \
    || die "SWARM_NODE_EFS is no EFS DNS name: ${host}"
  line="$(efs_fstab_line "$host")"
  # Our line replaces any other for the mount point: one file system there.
  others="$(grep -v -E "^[^#[:space:]]+[[:space:]]+${EFS_MOUNT}[[:space:]]" "$FSTAB" 2>/dev/null || true)"
  [[ -z "$others" ]] || others+=$'\n'
  if install_if_changed "$FSTAB" "${others}${line}"; then
    echo "shared file system ${host%%.*} in /etc/fstab at ${EFS_MOUNT}"
  fi
  as_root mkdir -p "${ROOT%/}${EFS_MOUNT}"
  if mountpoint -q "${ROOT%/}${EFS_MOUNT}"; then
    echo "shared file system already mounted at ${EFS_MOUNT}"
    return
  fi
  until as_root mount "${ROOT%/}${EFS_MOUNT}"; do
    (( attempt++ < EFS_MOUNT_ATTEMPTS )) || die "cannot mount ${host} at ${EFS_MOUNT}"
    sleep "$EFS_MOUNT_PAUSE"
  done
  echo "shared file system mounted at ${EFS_MOUNT}"
}

configure_node() {
  configure_logs
  configure_efs
  check_spot_units
}

# --- spot workers (docs/swarm.md, "Spot workers") -----------------------------------
#   SWARM_NODE_SPOT=1  the cluster's workers are spot instances (terraform/aws spot.tf):
#                      a worker runs swarmforge-spot-notice (it leaves the swarm on EC2's
#                      interruption notice), a manager swarmforge-spot-reaper (it drains
#                      and removes the workers that announce it). Both are checked before
#                      the node joins, so an image baked without them fails here, not
#                      later unnoticed; the one for the node's role is enabled after.

check_spot_units() {
  local unit
  [[ "${SWARM_NODE_SPOT:-}" == 1 ]] || return 0
  for unit in swarmforge-spot-notice.service swarmforge-spot-reaper.service; do
    as_root systemctl cat "$unit" >/dev/null 2>&1 || die "${unit} is not in this image: bake a new one (invoke bake)"
  done
}

enable_spot_unit() {
  local unit=swarmforge-spot-notice.service
  [[ "${SWARM_NODE_SPOT:-}" == 1 ]] || return 0
  [[ "$(swarm_field ControlAvailable)" != "true" ]] || unit=swarmforge-spot-reaper.service
  as_root systemctl enable --now "$unit" >/dev/null 2>&1 || die "cannot enable ${unit}"
  echo "enabled ${unit}"
}

case "${1:-}" in
  init) configure_node; init_swarm "${2:-}" "${3:-}" "${4:-}"; enable_spot_unit ;;
  # The request is removed even when setting up the node fails (the EXIT trap).
  join) join_request="${2:-}"; configure_node; join_swarm "${2:-}"; enable_spot_unit ;;
  configure) configure_node ;;
  *) die "usage: swarm-node.sh init ADVERTISE_ADDR [POOL [MASK_LENGTH]] | join REQUEST_FILE | configure" ;;
esac
