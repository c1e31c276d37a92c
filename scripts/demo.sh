#!/usr/bin/env bash
# The main job (`make run`): a home cluster and one edge cluster on
# loopback, mirroring both ways, with the guard refusing what must not be
# written. Usage: scripts/demo.sh BINARY DATA_DIR BASE_PORT
set -euo pipefail
MG=$1 DIR=$2 PORT=$3
HOME_SC=127.0.0.1:$PORT EDGE_SC=127.0.0.1:$((PORT + 100))
rm -rf "$DIR"; mkdir -p "$DIR"
stop() {
  "$MG" cluster shutdown --data-dir "$DIR/home" >/dev/null 2>&1 || true
  "$MG" cluster shutdown --data-dir "$DIR/edge1" >/dev/null 2>&1 || true
}
trap stop EXIT
# Each command is shown as it would be typed at that cluster.
home() { printf '\nhome$ mirror-guard %s\n' "$*"; MIRROR_GUARD_SC=$HOME_SC "$MG" "$@"; }
edge() { printf '\nedge1$ mirror-guard %s\n' "$*"; MIRROR_GUARD_SC=$EDGE_SC "$MG" "$@"; }
# Waits (up to 20 s) until a command prints what is expected.
until_prints() {
  local want=$1; shift
  for _ in $(seq 100); do
    if "$@" 2>/dev/null | grep -q -- "$want"; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for: $want" >&2; return 1
}

home cluster start --spus 1 --base-port "$PORT" --data-dir "$DIR/home"
edge cluster start --spus 1 --base-port $((PORT + 100)) --data-dir "$DIR/edge1"
home remote register edge1
echo '["edge1"]' > "$DIR/remotes.json"
home topic create edge-metrics --mirror-apply "$DIR/remotes.json"
home topic create announcements --mirror-apply "$DIR/remotes.json" --home-to-remote
home remote export edge1 --file "$DIR/edge1.json" --tls-dir "$DIR/home/tls"
# The file carries the remote's key: shown here without the PEM bodies.
sed -E 's/"(caCert|clientCert|clientKey)": "[^"]*"/"\1": "<PEM, elided>"/' "$DIR/edge1.json"; echo
edge home connect --file "$DIR/edge1.json"
until_prints announcements env MIRROR_GUARD_SC=$EDGE_SC "$MG" topic list
edge topic list

edge produce edge-metrics <<< $'cpu=71\ncpu=64'; printf '  < %s\n' cpu=71 cpu=64
until_prints ' 2 ' env MIRROR_GUARD_SC=$HOME_SC "$MG" partition list
home consume edge-metrics -B -d
if printf 'written at home?\n' | home produce edge-metrics; then
  echo 'UNEXPECTED: accepted'; exit 1
fi
echo '-> refused by the home SPU before storage: only the mirror writes here'

home produce announcements <<< 'maintenance at 02:00'; printf '  < maintenance at 02:00\n'
until_prints maintenance env MIRROR_GUARD_SC=$EDGE_SC "$MG" consume announcements -B -d
edge consume announcements -B -d
if printf 'written at the edge?\n' | edge produce announcements; then
  echo 'UNEXPECTED: accepted'; exit 1
fi
echo '-> refused by the edge SPU: a home-to-remote topic is written at home only'

home partition list
home remote list
edge home status

echo; echo '# Operating the mirror, at the home that receives it'
home topic mirror-pause edge-metrics
until_prints paused-by-peer env MIRROR_GUARD_SC=$EDGE_SC "$MG" home status
edge produce edge-metrics <<< 'cpu=80'; printf '  < cpu=80\n'
edge home status
home consume edge-metrics -B -d
echo '-> paused: cpu=80 waits at the edge'
home topic mirror-resume edge-metrics
home topic promote edge-metrics
home consume edge-metrics -B -d
home produce edge-metrics <<< 'written at home'; printf '  < written at home\n'
echo '-> promoted: the partition is the home'"'"'s own, and the edge is fenced off'
until_prints ended env MIRROR_GUARD_SC=$EDGE_SC "$MG" home status
home topic list
edge home status
