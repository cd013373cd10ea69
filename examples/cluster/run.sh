#!/usr/bin/env bash
# examples/cluster/run.sh: cluster mode on one machine, with one command.
#
# Starts a three-member etcd (examples/cluster/etcd, etcd 3.7.3 from its
# embed package), three modelgate replicas sharing it (docs/cluster.md),
# HAProxy in front of them (round robin, health checks on each replica's
# /readyz), and three stand-in models (model.py: blue and green healthy, red
# failing 8% of its requests), all on loopback ports. Needs Go, python3 and
# haproxy (Debian's); writes only to a temp dir, runs nothing as a daemon.
#
#   examples/cluster/run.sh                  start, print what to try; Ctrl-C stops everything
#   examples/cluster/run.sh --rollout green  start, send traffic through HAProxy, roll green out
#                                            through a follower, watch it end, stop everything;
#                                            exit 0 when green is promoted, 1 when rolled back
#   examples/cluster/run.sh --check          the same with green (must be promoted), then red
#                                            (must be rolled back); what `make test` runs
#   --base-port N    ports N+1 to N+93 (default 18000; --check: a free range in 20000-32693)
#   --base-port auto a free range in 20000-32693
#
# Ports from the base B: HAProxy B+80 (its stats page B+90), replica i's data
# plane B+81+i and admin API B+91+i, models B+1..3, etcd clients B+11..13
# and peers B+21..23.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
MODE=try ROLLOUT="" BASE=""
while [ $# -gt 0 ]; do
	case $1 in
	--rollout) [ $# -ge 2 ] || usage; MODE=rollout ROLLOUT=$2; shift 2 ;;
	--check) MODE=check; shift ;;
	--base-port) [ $# -ge 2 ] || usage; BASE=$2; shift 2 ;;
	*) usage ;;
	esac
done
[ -n "$BASE" ] || { [ $MODE = check ] && BASE=auto || BASE=18000; }

# free PORT...: every port can be bound on 127.0.0.1 now (with
# SO_REUSEADDR, as the servers bind theirs: a connection of a run before in
# TIME_WAIT is no obstacle).
free() {
	python3 - "$@" <<'PY'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}
ports() { local b=$1; echo $((b + 1)) $((b + 2)) $((b + 3)) $((b + 11)) $((b + 12)) $((b + 13)) $((b + 21)) $((b + 22)) $((b + 23)) $((b + 80)) $((b + 81)) $((b + 82)) $((b + 83)) $((b + 90)) $((b + 91)) $((b + 92)) $((b + 93)); }
if [ "$BASE" = auto ]; then
	# Below Linux's ephemeral range (32768 up), so that no outgoing
	# connection takes one of them meanwhile.
	for _ in $(seq 50); do
		b=$((20000 + 100 * (RANDOM % 127)))
		if free $(ports $b); then BASE=$b; break; fi
	done
	[ "$BASE" != auto ] || { echo "no free range of ports found in 20000-32693" >&2; exit 1; }
elif ! [[ $BASE =~ ^[0-9]+$ ]] || [ "$BASE" -lt 1024 ] || [ "$BASE" -gt 65400 ]; then
	echo "--base-port: a number from 1024 to 65400, or auto" >&2; exit 2
elif ! free $(ports "$BASE"); then
	echo "a port of $(ports "$BASE" | tr ' ' ,) is in use: pick another --base-port" >&2; exit 1
fi
B=$BASE
HAPROXY=127.0.0.1:$((B + 80)) STATS=127.0.0.1:$((B + 90))
data() { echo "127.0.0.1:$((B + 81 + $1))"; }
admin() { echo "127.0.0.1:$((B + 91 + $1))"; }

TMP=$(mktemp -d /tmp/modelgate-cluster.XXXX)
ETCD_PIDS=() MODEL_PIDS=() REPLICA_PIDS=() HAPROXY_PID="" LOAD=""
# running PID...: one of them has not exited yet (a zombie has).
running() {
	local p s
	for p in "$@"; do
		s=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
		[ -z "$s" ] || [ "$s" = Z ] || return 0
	done
	return 1
}
# stop PID...: SIGTERM, and SIGKILL to what is left after 15 s.
stop() {
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	local end=$((SECONDS + 15))
	while running "$@" && [ $SECONDS -lt $end ]; do sleep 0.1; done
	kill -KILL "$@" 2>/dev/null || true
}
# The replicas stop while etcd still answers, so that each hands its
# leadership and its replica record over at once; the etcd members one by one,
# so that each one leading hands its leadership over quickly.
# The binaries and etcd's data (about 250 MB) are removed; the logs and
# configs are kept, unless a --check passed.
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	stop $LOAD
	stop $HAPROXY_PID "${REPLICA_PIDS[@]}"
	for p in "${ETCD_PIDS[@]}"; do stop "$p"; done
	stop "${MODEL_PIDS[@]}"
	wait 2>/dev/null || true
	if [ $rc = 0 ] && [ $MODE = check ]; then
		rm -rf "$TMP"
		echo "stopped; removed $TMP"
	else
		rm -rf "$TMP/modelgate" "$TMP/etcd" "$TMP"/etcd-[0-2]
		echo "stopped; the logs are in $TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# fail MESSAGE: say it with the end of the logs, and stop.
fail() {
	echo "FAILED: $*" >&2
	for f in "$TMP"/*.log; do echo "--- $f" >&2; tail -5 "$f" >&2; done
	exit 1
}
# waitfor SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s until it succeeds.
waitfor() {
	local secs=$1 what=$2 end
	shift 2
	end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || fail "$what within ${secs}s"
		sleep 0.1
	done
}
# alive PID COMMAND...: COMMAND succeeds; fails the run if PID has exited.
alive() {
	local pid=$1
	shift
	"$@" && return 0
	running "$pid" || fail "process $pid exited"
	return 1
}

echo "building modelgate and the etcd member into $TMP"
go build -o "$TMP/" ./cmd/modelgate ./examples/cluster/etcd
MG=$TMP/modelgate

# Every process the example starts runs in a session of its own (setsid),
# out of reach of Ctrl-C, which the terminal sends to its whole foreground
# process group: the script stops them itself, in order (see cleanup).
initial="m0=http://127.0.0.1:$((B + 21)),m1=http://127.0.0.1:$((B + 22)),m2=http://127.0.0.1:$((B + 23))"
for i in 0 1 2; do
	setsid "$TMP/etcd" -name "m$i" -dir "$TMP/etcd-$i" -client "http://127.0.0.1:$((B + 11 + i))" \
		-peer "http://127.0.0.1:$((B + 21 + i))" -initial-cluster "$initial" >"$TMP/etcd-$i.log" 2>&1 &
	ETCD_PIDS+=("$!")
done
setsid python3 "$REPO/examples/cluster/model.py" $((B + 1)) v1 >"$TMP/blue.log" 2>&1 &
MODEL_PIDS+=("$!")
setsid python3 "$REPO/examples/cluster/model.py" $((B + 2)) v2 >"$TMP/green.log" 2>&1 &
MODEL_PIDS+=("$!")
setsid python3 "$REPO/examples/cluster/model.py" $((B + 3)) v3 0.08 >"$TMP/red.log" 2>&1 &
MODEL_PIDS+=("$!")
for i in 0 1 2; do waitfor 20 "etcd member $i to start" grep -q ready "$TMP/etcd-$i.log"; done
echo "etcd: http://127.0.0.1:$((B + 11)), :$((B + 12)), :$((B + 13))"

# One token for the fleet, written before any replica starts (each would
# make its own otherwise).
python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$TMP/fleet.token"
chmod 600 "$TMP/fleet.token"
# replica I: write replica I's config and start it.
replica() {
	local i=$1
	mkdir -p "$TMP/gw-$i"
	cat >"$TMP/gw-$i/modelgate.yaml" <<YAML
listen: $(data $i)
admin:
  listen: $(admin $i)
  token_file: $TMP/fleet.token
state:
  path: $TMP/gw-$i/state.db
  etcd:
    endpoints: [http://127.0.0.1:$((B + 11)), http://127.0.0.1:$((B + 12)), http://127.0.0.1:$((B + 13))]
    prefix: /modelgate/example/
    lease_ttl: 5s
endpoints:
  - name: fraud
    deployments:
      - {name: blue, backends: [http://127.0.0.1:$((B + 1))]}
      - {name: green, backends: [http://127.0.0.1:$((B + 2))]}
      - {name: red, backends: [http://127.0.0.1:$((B + 3))]}
    traffic: {blue: 100}
YAML
	(cd "$TMP/gw-$i" && exec setsid "$MG" serve --config "$TMP/gw-$i/modelgate.yaml") >"$TMP/gw-$i.log" 2>&1 &
	REPLICA_PIDS+=("$!")
}
ready() { waitfor 30 "replica $1 to start" alive "${REPLICA_PIDS[$1]}" curl -sf "http://$(admin "$1")/readyz"; }
# The first replica writes the endpoints of its config into the fleet's
# empty state; the others, started after it, find them there. (Replicas
# started at the same moment on an empty prefix race to write them, and
# the ones that lose exit: "state changed concurrently, try again".)
replica 0
ready 0
replica 1
replica 2
ready 1
ready 2
for i in 0 1 2; do
	echo "replica $i: data plane http://$(data $i)/fraud/predict, admin http://$(admin $i) (pid ${REPLICA_PIDS[$i]})"
done

# HAProxy in front: round robin over the data planes, each replica checked
# on its admin API's /readyz (200 while it serves, degraded or not); a
# request whose connection to a replica fails is sent to another one.
cat >"$TMP/haproxy.cfg" <<CFG
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
frontend gateway
    bind $HAPROXY
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
    server replica0 $(data 0) port $((B + 91))
    server replica1 $(data 1) port $((B + 92))
    server replica2 $(data 2) port $((B + 93))
listen stats
    bind $STATS
    stats enable
    stats uri /
    stats refresh 2s
CFG
setsid haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
# up: how many replicas HAProxy's health checks have up.
up() { curl -sf "http://$STATS/;csv" | awk -F, '$1 == "replicas" && $2 ~ /^replica/ && $18 == "UP"' | wc -l; }
allup() { [ "$(up)" = 3 ]; }
waitfor 20 "HAProxy to see three replicas up" allup
echo "HAProxy: http://$HAPROXY/fraud/predict (round robin over the three), stats at http://$STATS/"

export MODELGATE_TOKEN MODELGATE_ADMIN
MODELGATE_TOKEN=$(cat "$TMP/fleet.token") MODELGATE_ADMIN=$(admin 0)

if [ $MODE = try ]; then
	cat <<TXT

Three replicas share one state, behind HAProxy. Try (in another shell):

  export MODELGATE_TOKEN=\$(cat $TMP/fleet.token) MODELGATE_ADMIN=$(admin 0)
  $MG replicas
  python3 $REPO/examples/cluster/load.py $HAPROXY 200 &       # traffic through HAProxy; kill %1 prints what it got
  $MG traffic set fraud blue=90 green=10 red=0 --admin $(admin 1)   # through one replica
  $MG traffic get fraud --admin $(admin 2)                          # routed by every one
  $MG traffic set fraud blue=100 green=0 red=0
  $MG rollout start fraud --canary green -f $REPO/examples/cluster/plan.yaml  # sent on to the leader
  $MG rollout watch fraud

Kill a replica or the leader (pids above; 'modelgate replicas' says which one leads): HAProxy
sends its requests to the others, and another replica takes the rollout over. Stop one etcd member
(the fleet goes on), or all three, and see /readyz say "degraded" and changes refused until they are
back. Or roll out red, which fails 8% of its requests, and watch it rolled back. docs/cluster.md
says what happens in each case. Ctrl-C here stops everything.
TXT
	wait
	exit 0
fi

# Traffic through HAProxy for as long as the rollouts run.
setsid python3 "$REPO/examples/cluster/load.py" "$HAPROXY" 600 >"$TMP/load.log" 2>&1 &
LOAD=$!

# follower: the admin address of a replica that does not lead, so that the
# CLI's following of the leader is part of the run.
follower() {
	"$MG" replicas -o json | python3 -c '
import json, sys
reps = json.load(sys.stdin)["replicas"]
if not any(r["leader"] for r in reps):
    sys.exit(1)
print(next(r["admin_url"] for r in reps if not r["leader"]))'
}
waitfor 20 "a leader to be elected" follower
# only DEP: the next 30 requests through HAProxy are all served by DEP
# (every replica routes the outcome).
only() { python3 "$REPO/examples/cluster/load.py" "$HAPROXY" 1000 30 | grep -qx "requests=30 ok=30 failed=0 unanswered=0 $1=30"; }

# roll DEP: roll DEP out through a follower and watch it end; watch's exit status.
roll() {
	local via
	via=$(follower)
	echo
	echo "== rolling $1 out, through the replica at $via =="
	"$MG" rollout start fraud -f "$REPO/examples/cluster/plan.yaml" --canary "$1" --admin "$via"
	echo "(the estimate counts the last minute's traffic, which began a few seconds ago)"
	timeout --foreground 90 "$MG" rollout watch fraud --admin "$via"
}

case $MODE in
rollout)
	status=0
	roll "$ROLLOUT" || status=$?
	stop $LOAD; wait $LOAD || true; LOAD=""
	echo "traffic through HAProxy during the rollout: $(cat "$TMP/load.log")"
	exit $status
	;;
check)
	roll green || fail "green, a healthy canary, was not promoted"
	waitfor 10 "every replica to route green's promotion" only green
	echo "CHECK: green promoted; every replica routes it"
	if roll red; then fail "red, failing 8% of its requests, was promoted"; fi
	phase=$("$MG" rollout status fraud -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["phase"])')
	[ "$phase" = rolled_back ] || fail "red's rollout ended $phase, want rolled_back"
	waitfor 10 "every replica to route red's rollback" only green
	echo "CHECK: red rolled back; every replica routes green again"
	stop $LOAD; wait $LOAD || true; LOAD=""
	summary=$(cat "$TMP/load.log")
	echo "traffic through HAProxy during the rollouts: $summary"
	[[ $summary =~ requests=([0-9]+)\ ok=[0-9]+\ failed=([0-9]+) ]] || fail "no traffic summary"
	total=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]}
	[ "$total" -ge 300 ] || fail "too little traffic went through HAProxy"
	# Red's own errors are the only failures allowed.
	red_failed=$(grep -o 'red_failed=[0-9]*' <<<"$summary" | cut -d= -f2)
	[ "$failed" = "${red_failed:-0}" ] || fail "requests failed that red did not fail"
	served=$(curl -sf "http://$STATS/;csv" | awk -F, '$1 == "replicas" && $2 ~ /^replica/ && $8 > 0' | wc -l)
	[ "$served" = 3 ] || fail "HAProxy sent traffic to $served replicas, want 3"
	echo "CHECK: passed (HAProxy spread the traffic over the three replicas)"
	;;
esac
