#!/usr/bin/env bash
# On a spot worker: wait for EC2's interruption notice, then take this node out of
# the swarm before the instance goes (docs/swarm.md, "Spot workers").
#
#   spot-notice.sh watch    poll the instance metadata for the notice; on one, depart
#                           and exit (the notice stays until the instance is gone)
#   spot-notice.sh depart [DEADLINE]
#                           depart now; leave by DEADLINE (seconds since the epoch;
#                           default: two minutes from now, what a notice gives)
#
# Departing, in the order every departure keeps (drain, leave, remove):
#   1. announce: put the engine label swarmforge.leaving on this node's dockerd
#      (daemon.json, then a reload); Docker's agent reports it to the managers within
#      20 s, and the leader's spot-reaper.sh drains the node: its tasks move;
#   2. wait until no task of the swarm runs here and SPOT_ANNOUNCE_WAIT seconds have
#      passed (a node without tasks learns of no drain), or until the deadline;
#   3. docker swarm leave; the reaper removes the entry once it shows Down;
#   4. take the label off again, so that the node, should it ever join again, is not
#      taken for one on its way out.
# A worker cannot drain or remove itself, and holds no manager credential: the label
# is its only message, and the swarm's own TLS says which node sent it.
#
# Settings (environment; the systemd unit sets none, so these defaults hold on EC2):
#   IMDS_URL            instance metadata service (http://169.254.169.254)
#   SPOT_POLL           seconds between looks at the notice (5, as AWS advises)
#   SPOT_ANNOUNCE_WAIT  least seconds between announcing and leaving (30: the agent's
#                       20 s report period and the reaper's 5 s poll, with room)
#   SPOT_LEAVE_MARGIN   leave this many seconds before the termination time (20)
#   DOCKER_CONFIG_FILE  dockerd's configuration (/etc/docker/daemon.json)
#   DOCKER_PIDFILE      dockerd's pidfile (/var/run/docker.pid), to reload it
#
# Idempotent: depart on a node in no swarm only makes sure the label is off.
set -euo pipefail

readonly LABEL="swarmforge.leaving"
IMDS_URL="${IMDS_URL:-http://169.254.169.254}"
SPOT_POLL="${SPOT_POLL:-5}"
SPOT_ANNOUNCE_WAIT="${SPOT_ANNOUNCE_WAIT:-30}"
SPOT_LEAVE_MARGIN="${SPOT_LEAVE_MARGIN:-20}"
DOCKER_CONFIG_FILE="${DOCKER_CONFIG_FILE:-/etc/docker/daemon.json}"
DOCKER_PIDFILE="${DOCKER_PIDFILE:-/var/run/docker.pid}"

say() { echo "spot-notice: $*"; }
die() { echo "spot-notice: $*" >&2; exit 1; }

for setting in SPOT_POLL SPOT_ANNOUNCE_WAIT SPOT_LEAVE_MARGIN; do
  [[ "${!setting}" =~ ^[0-9]+$ ]] || die "${setting} must be a whole number of seconds, not ${!setting}"
done
[[ "$IMDS_URL" =~ ^https?://[A-Za-z0-9.:-]+$ ]] || die "IMDS_URL must be http://HOST[:PORT], not ${IMDS_URL}"

# --- the notice ---------------------------------------------------------------

# An IMDSv2 session token; empty when the service gives none (IMDSv1 only).
imds_token() {
  curl --silent --fail --max-time 2 -X PUT \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "${IMDS_URL}/latest/api/token" || true
}

# The notice's JSON ({"action": "terminate", "time": "..."}), or nothing: EC2
# answers 404 until there is one.
notice() {
  local token
  token="$(imds_token)"
  local -a auth=()
  [[ -z "$token" ]] || auth=(-H "X-aws-ec2-metadata-token: ${token}")
  curl --silent --fail --max-time 2 "${auth[@]}" \
    "${IMDS_URL}/latest/meta-data/spot/instance-action" || true
}

# When the instance goes (seconds since the epoch); two minutes from now when the
# notice gives no time we can read.
termination_time() {
  local when
  when="$(sed -nE 's/.*"time"[[:space:]]*:[[:space:]]*"([^"]+)".*/\1/p' <<<"$1")"
  date -u -d "${when:-now + 120 seconds}" +%s 2>/dev/null || date -u -d 'now + 120 seconds' +%s
}

watch_notice() {
  local found
  say "watching ${IMDS_URL} for a spot interruption notice every ${SPOT_POLL}s"
  until found="$(notice)" && [[ -n "$found" ]]; do
    sleep "$SPOT_POLL"
  done
  say "interruption notice: ${found}"
  depart "$(( $(termination_time "$found") - SPOT_LEAVE_MARGIN ))"
}

# --- the departure ------------------------------------------------------------

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}'; }
swarm_tasks() { docker ps --quiet --filter label=com.docker.swarm.task.id | wc -l; }

# How many of dockerd's labels are ours: 0 or 1.
labelled() { docker info --format '{{range .Labels}}{{println .}}{{end}}' | grep -c "^${LABEL}=" || true; }

# Set (VALUE non-empty) or clear the label in dockerd's configuration, keeping the
# rest of it, then have dockerd read it again (labels are reloadable: no restart),
# and wait (bounded) until it reports the change. Nothing is written, and nothing
# reloaded, when dockerd has the label as wanted already.
set_label() {
  local value="$1" wanted=0 tries=50
  [[ -z "$value" ]] || wanted=1
  [[ "$(labelled)" != "$wanted" ]] || return 0
  python3 - "$DOCKER_CONFIG_FILE" "$LABEL" "$value" <<'PY'
import json, os, sys
path, label, value = sys.argv[1:]
try:
    with open(path) as handle:
        config = json.load(handle)
except FileNotFoundError:
    config = {}
labels = [entry for entry in config.get("labels", []) if not entry.startswith(label + "=")]
# [] too: dockerd's reload keeps the labels it has when the file names none.
config["labels"] = labels + ([f"{label}={value}"] if value else [])
with open(path + ".spot", "w") as handle:  # beside it, then renamed: never half written
    json.dump(config, handle, indent=2)
    handle.write("\n")
os.chmod(path + ".spot", 0o644)
os.replace(path + ".spot", path)
PY
  kill -HUP "$(cat "$DOCKER_PIDFILE")"
  until [[ "$(labelled)" == "$wanted" ]]; do
    (( --tries > 0 )) || die "dockerd did not take the label change (see its log)"
    sleep 0.1
  done
}

wait_for_drain() {
  local deadline="$1" announced="$2" left
  while left="$(swarm_tasks)"; do
    if (( left == 0 && $(date +%s) >= announced + SPOT_ANNOUNCE_WAIT )); then
      say "no task of the swarm runs here any more"
      return
    fi
    if (( $(date +%s) >= deadline )); then
      say "leaving with ${left} task(s) still here: the deadline has come"
      return
    fi
    sleep 1
  done
}

depart() {
  local deadline="${1:-$(( $(date +%s) + 120 ))}" announced
  [[ "$deadline" =~ ^[0-9]+$ ]] || die "DEADLINE must be seconds since the epoch, not ${deadline}"
  if [[ "$(swarm_state)" == "active" ]]; then
    set_label "$(date -u -d "@$(( deadline + SPOT_LEAVE_MARGIN ))" +%Y-%m-%dT%H:%M:%SZ)"
    announced="$(date +%s)"
    say "announced: ${LABEL} is set; waiting for the managers to drain this node"
    wait_for_drain "$deadline" "$announced"
    docker swarm leave >/dev/null
    say "left the swarm"
  else
    say "not in a swarm: nothing to leave"
  fi
  set_label ""
}

case "${1:-}" in
  watch) watch_notice ;;
  depart) depart "${2:-}" ;;
  *) die "usage: spot-notice.sh watch | depart [DEADLINE]" ;;
esac
