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
set -euo pipefail

die() { echo "swarm-node: $*" >&2; exit 1; }

# Strip anything that looks like a join token from text we are about to print.
redact() { sed -E 's/SWMTKN-[A-Za-z0-9-]+/SWMTKN-<redacted>/g'; }

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}'; }

docker_socket() {
  local host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  [[ "$host" == unix://* ]] || die "DOCKER_HOST must be a unix socket, not ${host}"
  echo "${host#unix://}"
}

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
  if [[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" == "true" ]]; then
    echo "joined as manager"
  else
    echo "joined as worker"
  fi
}

case "${1:-}" in
  init) init_swarm "${2:-}" "${3:-}" "${4:-}" ;;
  join) join_swarm "${2:-}" ;;
  *) die "usage: swarm-node.sh init ADVERTISE_ADDR [POOL [MASK_LENGTH]] | join REQUEST_FILE" ;;
esac
