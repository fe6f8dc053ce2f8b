#!/usr/bin/env bash
# A two-node hotline on one machine: Redis (the shared queues), Kamailio in
# front (one SIP address for callers and agents' phones), and nodes a and b
# with the demo agents (examples/agents.yaml). Ctrl-C stops everything.
#
#   ./scripts/cluster.sh
#
# Then (docs/cluster.md walks through it):
#   - register a softphone through the front: sip:piotr@127.0.0.1:5060,
#     password piotr-demo-pw;
#   - call sip:1000@127.0.0.1:5060, press 4 (Polski) then 0;
#   - watch http://127.0.0.1:8081/ (node a) or http://127.0.0.1:8082/ (node b);
#   - kill a node: kill -9 "$(cat data/cluster/a.pid)" -- new calls go to b.
#
# Settings (environment): CLUSTER_PORT (Kamailio's SIP port, 5060; nodes take
# the next two, HTTP 8081 and 8082), REDIS_PORT (6390), HOTLINE_BIN (a built
# binary; by default one is built with cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v kamailio >/dev/null || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

front=${CLUSTER_PORT:-5060}
redis_port=${REDIS_PORT:-6390}
http_a=${HTTP_A:-8081}
http_b=${HTTP_B:-8082}
bin=${HOTLINE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin hotline
  bin=./target/release/hotline
fi

work=data/cluster
mkdir -p "$work/a" "$work/b"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Kamailio's workers are in its process group.
  [ -f "$work/kamailio.pid" ] && kill -- "-$(cat "$work/kamailio.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "cluster stopped"
}
trap cleanup EXIT INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  >"$work/redis.log" 2>&1 &
pids+=($!)

printf '1 sip:127.0.0.1:%s\n1 sip:127.0.0.1:%s\n' $((front + 1)) $((front + 2)) \
  >"$work/dispatcher.list"
# A pid file left by a run that was killed would stop Kamailio from starting
# (its pid may belong to another process by now).
rm -f "$work/kamailio.pid.file"
setsid kamailio -f deploy/kamailio/kamailio.cfg -DD -E -m 32 -M 4 \
  -A "LISTEN=udp:127.0.0.1:$front" \
  -A "DISPATCHER_LIST=\"$PWD/$work/dispatcher.list\"" \
  -P "$PWD/$work/kamailio.pid.file" -Y "$PWD/$work" >"$work/kamailio.log" 2>&1 &
echo $! >"$work/kamailio.pid"

node() {
  local name=$1 sip=$2 http=$3 rtp=$4
  "$bin" serve --config examples/demo.yaml \
    --node-id "$name" --redis "redis://127.0.0.1:$redis_port/0" \
    --sip-listen "127.0.0.1:$sip" --http-listen "127.0.0.1:$http" \
    --data-dir "$work/$name" --rtp-ports "$rtp" >"$work/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$work/$name.pid"
}
node a $((front + 1)) "$http_a" 20000-24999
node b $((front + 2)) "$http_b" 25000-29999

for http in "$http_a" "$http_b"; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break
    sleep 0.2
  done
done
cat <<EOF
hotline cluster up:
  front (Kamailio)  sip:127.0.0.1:$front   log $work/kamailio.log
  node a            sip:127.0.0.1:$((front + 1))  http://127.0.0.1:$http_a/  log $work/a.log
  node b            sip:127.0.0.1:$((front + 2))  http://127.0.0.1:$http_b/  log $work/b.log
  redis             127.0.0.1:$redis_port
Register sip:piotr@127.0.0.1:$front (password piotr-demo-pw), call sip:1000@127.0.0.1:$front.
Kill a node: kill -9 \$(cat $work/a.pid). Ctrl-C stops everything.
EOF
wait
