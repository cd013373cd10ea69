#!/usr/bin/env bash
# examples/cluster/run.sh: cluster mode on one machine, to try it.
#
# Starts a three-member etcd (examples/cluster/etcd, etcd 3.7.3 from its
# embed package), three modelgate replicas sharing it (docs/cluster.md), and
# three stand-in models (model.py: blue and green healthy, red failing 8% of
# its requests), all on loopback ports, then prints what to try. Ctrl-C
# stops everything. Needs Go and python3; writes only to a temp dir.
#
#   examples/cluster/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
TMP=$(mktemp -d /tmp/modelgate-cluster.XXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "stopped; logs and state are in $TMP"
}
trap cleanup EXIT INT TERM

echo "building modelgate and the etcd member into $TMP"
go build -o "$TMP/modelgate" ./cmd/modelgate
go build -o "$TMP/etcd" ./examples/cluster/etcd

initial="m0=http://127.0.0.1:23800,m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802"
for i in 0 1 2; do
	"$TMP/etcd" -name "m$i" -dir "$TMP/etcd-$i" -client "http://127.0.0.1:2379$i" \
		-peer "http://127.0.0.1:2380$i" -initial-cluster "$initial" >"$TMP/etcd-$i.log" 2>&1 &
	PIDS+=("$!")
done
for i in 0 1 2; do
	for _ in $(seq 100); do grep -q ready "$TMP/etcd-$i.log" 2>/dev/null && break; sleep 0.1; done
	grep -q ready "$TMP/etcd-$i.log" || { echo "etcd member $i did not start: $(tail -3 "$TMP/etcd-$i.log")"; exit 1; }
done
echo "etcd: http://127.0.0.1:23790, :23791, :23792"

python3 "$REPO/examples/cluster/model.py" 19001 v1 >"$TMP/blue.log" 2>&1 &
PIDS+=("$!")
python3 "$REPO/examples/cluster/model.py" 19002 v2 >"$TMP/green.log" 2>&1 &
PIDS+=("$!")
python3 "$REPO/examples/cluster/model.py" 19003 v3 0.08 >"$TMP/red.log" 2>&1 &
PIDS+=("$!")

for i in 0 1 2; do
	mkdir -p "$TMP/gw-$i"
	cat >"$TMP/gw-$i/modelgate.yaml" <<YAML
listen: 127.0.0.1:1808$i
admin:
  listen: 127.0.0.1:1809$i
  token_file: $TMP/fleet.token
state:
  path: $TMP/gw-$i/state.db
  etcd:
    endpoints: [http://127.0.0.1:23790, http://127.0.0.1:23791, http://127.0.0.1:23792]
    prefix: /modelgate/example/
    lease_ttl: 5s
endpoints:
  - name: fraud
    deployments:
      - {name: blue, backends: [http://127.0.0.1:19001]}
      - {name: green, backends: [http://127.0.0.1:19002]}
      - {name: red, backends: [http://127.0.0.1:19003]}
    traffic: {blue: 100}
YAML
	(cd "$TMP/gw-$i" && exec "$TMP/modelgate" serve --config "$TMP/gw-$i/modelgate.yaml") >"$TMP/gw-$i.log" 2>&1 &
	PIDS+=("$!")
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:1809$i/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
	curl -sf "http://127.0.0.1:1809$i/readyz" >/dev/null || { echo "replica $i did not start: $(tail -5 "$TMP/gw-$i.log")"; exit 1; }
	echo "replica $i: data plane http://127.0.0.1:1808$i/fraud/predict, admin http://127.0.0.1:1809$i (pid ${PIDS[-1]})"
done

cat <<TXT

Three replicas share one state. Try (in another shell):

  export MODELGATE_TOKEN=\$(cat $TMP/fleet.token) MODELGATE_ADMIN=127.0.0.1:18091
  $TMP/modelgate replicas
  while true; do for p in 18080 18081 18082; do curl -s -o /dev/null -X POST -d '{"instances":[[1]]}' http://127.0.0.1:\$p/fraud/predict; done; done &
  $TMP/modelgate traffic set fraud blue=90 green=10 red=0 --admin 127.0.0.1:18092   # through one replica
  $TMP/modelgate traffic get fraud --admin 127.0.0.1:18090                          # routed by every one
  $TMP/modelgate traffic set fraud blue=100 green=0 red=0
  $TMP/modelgate rollout start fraud --canary green                                 # sent to the leader
  $TMP/modelgate rollout watch fraud

Kill the leader (its pid is above; 'modelgate replicas' says which one leads) and watch another
take the rollout over; stop an etcd member, or all three, and see /readyz say "degraded". Or roll
out red, which fails 8% of its requests, and watch it rolled back. (Until issue 20, a rollout is
judged on the leader's own share of the traffic.)
Ctrl-C here stops everything.
TXT
wait
