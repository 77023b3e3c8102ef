#!/usr/bin/env bash
# On a manager: take out of the swarm the workers that announced their exit
# (scripts/spot-notice.sh: the engine label swarmforge.leaving), in the order every
# departure keeps: drain them (their tasks move while they still run), and once
# they have left and show Down, remove their entries (docs/swarm.md, "Spot workers").
#
#   spot-reaper.sh watch    one pass every REAP_POLL seconds (default 5)
#   spot-reaper.sh once     one pass
#
# Every manager runs it; only the leader acts, so the passes never race. Workers
# only, by node ID: a manager is never touched here (quorum is not ours to risk),
# and a node that joins again under the same hostname has another ID.
# Idempotent: a pass that fails half-way (an election) is made again by the next.
set -euo pipefail

readonly LABEL="swarmforge.leaving"
REAP_POLL="${REAP_POLL:-5}"

say() { echo "spot-reaper: $*"; }
die() { echo "spot-reaper: $*" >&2; exit 1; }

[[ "$REAP_POLL" =~ ^[0-9]+$ ]] || die "REAP_POLL must be a whole number of seconds, not ${REAP_POLL}"

leads() {
  [[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" == "true" ]] &&
    [[ "$(docker node inspect self --format '{{.ManagerStatus.Leader}}')" == "true" ]]
}

# "ID STATE AVAILABILITY HOSTNAME" of each worker that announced its exit. The
# `label` filter of `docker node ls` matches engine labels (`node.label` would be
# the swarm's own): one call, whatever the size of the swarm.
leaving() {
  local ids
  ids="$(docker node ls --quiet --filter role=worker --filter "label=${LABEL}")"
  [[ -z "$ids" ]] && return
  # shellcheck disable=SC2086 # one argument per ID
  docker node inspect --format '{{.ID}} {{.Status.State}} {{.Spec.Availability}} {{.Description.Hostname}}' $ids
}

# Each step checked by hand: `set -e` does not hold in a function called before ||.
reap() {
  local id state availability hostname
  leads || return 0
  while read -r id state availability hostname; do
    if [[ "$availability" != "drain" ]]; then
      docker node update --availability drain "$id" >/dev/null || return 1
      say "draining ${hostname} (${id}): it announced its exit"
    fi
    if [[ "$state" == "down" ]]; then
      docker node rm "$id" >/dev/null || return 1
      say "removed ${hostname} (${id}): it has left"
    fi
  done < <(leaving)
}

watch() {
  say "every ${REAP_POLL}s, on the leader: drain the workers labelled ${LABEL}, remove them once Down"
  while true; do
    reap || say "this pass failed; the next one tries again"
    sleep "$REAP_POLL"
  done
}

case "${1:-}" in
  watch) watch ;;
  once) reap ;;
  *) die "usage: spot-reaper.sh watch | once" ;;
esac
