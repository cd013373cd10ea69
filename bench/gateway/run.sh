#!/usr/bin/env bash
# bench/gateway/run.sh: modelgate's data plane against nginx and HAProxy, in
# one run, with the same stand-in model backends and the same wrk load.
#
# Setups (each a fresh process per measurement, measured A B C ... A B C ...
# over the rounds, medians reported):
#   direct         wrk straight to the blue backend: the floor
#   nginx          nginx, 95/5 split_clients, worker_processes auto
#   haproxy        HAProxy, 95/5 weighted servers, nbthread 2
#   nginx-mirror   nginx, 95/5 split + 10% mirror to the shadow backend
#   mg             modelgate, 95/5 split
#   mg-mirror      modelgate, 95/5 split + 10% mirror to a third deployment,
#                  comparison on (compare: kserve_v1, numeric)
#   nginx-tls      nginx as "nginx", clients over TLS (not in the default
#                  setups: --setups "nginx-tls mg-tls")
#   mg-tls         modelgate as "mg", clients over TLS (tls: in the config;
#                  the goroutine engine serves TLS connections)
#   mg-etcd        modelgate as "mg", its state in etcd (cluster mode, one
#                  gateway): one etcd member (examples/cluster/etcd, built
#                  here) runs for the whole run, each measurement under a
#                  prefix of its own (not in the default setups:
#                  --setups "mg mg-etcd")
#
# The TLS setups share one certificate (ECDSA P-256, made with openssl at
# the start, signed by a CA made there too); wrk resumes no sessions: each
# connection does one full handshake, then keep-alive requests.
#
# The backends are nginx answering {"predictions":[0.12,0.88]} on three
# ports (blue, green, shadow). Nothing is pinned to CPUs unless asked
# (--gateway-cpus, --backend-cpus, --wrk-cpus take taskset lists).
#
# Usage: bench/gateway/run.sh [options]   (see --help)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-"32 64"}
THREADS=${THREADS:-2}
SETUPS=${SETUPS:-"direct nginx haproxy nginx-mirror mg mg-mirror"}
ALL_SETUPS="direct nginx haproxy nginx-mirror mg mg-mirror nginx-tls mg-tls mg-etcd"
GATEWAY_CPUS=${GATEWAY_CPUS:-}
BACKEND_CPUS=${BACKEND_CPUS:-}
WRK_CPUS=${WRK_CPUS:-}
REV=""
BIN=""
OUT=""
KEEP=0
PERF=0

usage() {
	cat <<EOF
usage: bench/gateway/run.sh [options]

  -r, --rounds N          rounds; each round measures every setup once per
                          connection count, in order (default $ROUNDS)
  -d, --duration D        wrk duration of one measurement (default $DURATION)
  -w, --warmup D          unmeasured wrk run before each measurement, on the
                          same fresh process (default $WARMUP; 0 to skip)
  -c, --conns "N ..."     connection counts (default "$CONNS")
  -t, --threads N         wrk threads (default $THREADS)
  -s, --setups "S ..."    subset and order of: $ALL_SETUPS
                          (default "$SETUPS")
      --rev REV           build modelgate from git revision REV (git archive,
                          the work tree is not touched) instead of the work tree
      --bin PATH          use this modelgate binary instead of building one
      --gateway-cpus L    taskset CPU list for the gateway under test (default: none)
      --backend-cpus L    taskset CPU list for the stand-in backends (default: none)
      --wrk-cpus L        taskset CPU list for wrk (default: none)
      --perf              after the measured rounds, one extra unmeasured run of
                          each modelgate setup at the largest connection count
                          with perf sampling it (cpu-clock, call graphs); text
                          reports go next to --out, perf.data stays in the
                          kept temp dir
  -o, --out FILE          also write the result tables (markdown) to FILE
  -k, --keep              keep the temp dir (configs, logs, raw results)
  -h, --help

Environment: ROUNDS DURATION WARMUP CONNS THREADS SETUPS GATEWAY_CPUS
BACKEND_CPUS WRK_CPUS set the same defaults. GOGC/GOMAXPROCS etc. are passed
through to modelgate unchanged.
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	-r | --rounds) ROUNDS=$2; shift 2 ;;
	-d | --duration) DURATION=$2; shift 2 ;;
	-w | --warmup) WARMUP=$2; shift 2 ;;
	-c | --conns) CONNS=$2; shift 2 ;;
	-t | --threads) THREADS=$2; shift 2 ;;
	-s | --setups) SETUPS=$2; shift 2 ;;
	--rev) REV=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	--gateway-cpus) GATEWAY_CPUS=$2; shift 2 ;;
	--backend-cpus) BACKEND_CPUS=$2; shift 2 ;;
	--wrk-cpus) WRK_CPUS=$2; shift 2 ;;
	--perf) PERF=1; shift ;;
	-o | --out) OUT=$2; shift 2 ;;
	-k | --keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools ------------------------------------------------------------------

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null 2>&1; then need+=(linux-perf); fi
if [ ${#need[@]} -gt 0 ]; then
	log "installing from Debian: ${need[*]}"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
PATH=$PATH:/usr/sbin
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)
WRK=$(command -v wrk)

# --- temp dir, processes, cleanup --------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/modelgate-bench.XXXXXX")
PIDS=() # every process this script started and has not stopped yet

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL; only our own PIDs
	local pid=$1 i keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
	if kill -TERM "$pid" 2>/dev/null; then
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then
		log "kept $TMP (configs, logs, raw results)"
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pin() { # pin CPULIST CMD...: run CMD under taskset when a CPU list is given
	local cpus=$1; shift
	if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

render() { # render TEMPLATE OUT KEY=VALUE...: replace @KEY@ in TEMPLATE
	local tpl=$1 out=$2; shift 2
	local text kv
	text=$(<"$tpl")
	for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
	printf '%s\n' "$text" >"$out"
}

wait_ready() { # wait_ready PID URL: until URL answers 200 to the bench POST
	local pid=$1 url=$2 i
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		if [ "$(curl -s --cacert "$TMP/tls/ca.crt" -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
			--data '{"instances":[[5.1,3.5,1.4,0.2]]}' "$url" 2>/dev/null)" = 200 ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# peak_rss_kib PID: VmHWM of PID plus its children (nginx workers).
peak_rss_kib() {
	local pid=$1 total=0 p v
	for p in $pid $(pgrep -P "$pid" 2>/dev/null || true); do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# proc_totals PID: "utime stime syscr syscw" of PID plus its children
# (clock ticks and syscall counts, all threads), for CPU and system calls
# per request.
proc_totals() {
	local pid=$1 p
	for p in $pid $(pgrep -P "$pid" 2>/dev/null || true); do
		awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$p/stat" 2>/dev/null || true
		awk '/^syscr:/ {r = $2} /^syscw:/ {w = $2} END {print r + 0, w + 0}' "/proc/$p/io" 2>/dev/null || true
	done | awk 'NF == 2 { if (n++ % 2 == 0) { u += $1; s += $2 } else { r += $1; w += $2 } } END { print u + 0, s + 0, r + 0, w + 0 }'
}
CLK_TCK=$(getconf CLK_TCK)

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"

start_nginx() { # start_nginx NAME CONF CPUS: foreground master, PID in $STARTED
	local name=$1 conf=$2 cpus=$3
	mkdir -p "$TMP/$name"
	(pin "$cpus" "$NGINX" -p "$TMP/$name" -c "$conf" -g 'daemon off; master_process on;') \
		>"$TMP/$name/stdout.log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}

# --- build ------------------------------------------------------------------

MG=$TMP/modelgate
if [ -n "$BIN" ]; then
	cp "$BIN" "$MG"
	MG_SRC="binary $BIN"
elif [ -n "$REV" ]; then
	mkdir -p "$TMP/src"
	git -C "$REPO" archive "$REV" | tar -x -C "$TMP/src"
	log "building modelgate at $REV ($(git -C "$REPO" rev-parse --short "$REV"))"
	(cd "$TMP/src" && go build -o "$MG" ./cmd/modelgate)
	MG_SRC="git $(git -C "$REPO" rev-parse --short "$REV")"
else
	log "building modelgate from the work tree"
	(cd "$REPO" && go build -o "$MG" ./cmd/modelgate)
	MG_SRC="work tree at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
	if [ -n "$(git -C "$REPO" status --porcelain -- cmd internal go.mod go.sum 2>/dev/null)" ]; then
		MG_SRC="$MG_SRC (with uncommitted changes)"
	fi
fi

# --- etcd (the mg-etcd setup) ---------------------------------------------------

ETCD_PREFIXES=0
if [[ " $SETUPS " == *" mg-etcd "* ]]; then
	if [ -n "$REV" ]; then etcd_src="$TMP/src"; else etcd_src="$REPO"; fi
	log "building the etcd member (examples/cluster/etcd)"
	(cd "$etcd_src" && go build -o "$TMP/etcd" ./examples/cluster/etcd)
	ETCD_PORT=$(free_port)
	(pin "$BACKEND_CPUS" "$TMP/etcd" -dir "$TMP/etcd-data" -client "http://127.0.0.1:$ETCD_PORT" \
		-peer "http://127.0.0.1:$(free_port)" -unsafe-no-fsync) >"$TMP/etcd.log" 2>&1 &
	PIDS+=("$!")
	for _ in $(seq 100); do
		grep -q "ready" "$TMP/etcd.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q "ready" "$TMP/etcd.log" || die "etcd did not start: $(tail -5 "$TMP/etcd.log")"
fi

# --- certificates (the TLS setups) -------------------------------------------

mkdir -p "$TMP/tls"
(
	cd "$TMP/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
		-keyout ca.key -out ca.crt
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
		-keyout gateway.key -out gateway.csr
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf
	openssl x509 -req -in gateway.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out gateway.crt
) >"$TMP/tls/openssl.log" 2>&1 || die "openssl: $(cat "$TMP/tls/openssl.log")"
chmod 600 "$TMP/tls/"*.key

# --- backends -----------------------------------------------------------------

BLUE_PORT=$(free_port)
GREEN_PORT=$(free_port)
SHADOW_PORT=$(free_port)
LIVE_STATUS_PORT=$(free_port)
SHADOW_STATUS_PORT=$(free_port)

mkdir -p "$TMP/backends" "$TMP/shadow-backend"
render "$HERE/backends.nginx.conf" "$TMP/backends/nginx.conf" USER="$USER_LINE" WORKERS=auto DIR="$TMP/backends" \
	LISTEN="        listen 127.0.0.1:$BLUE_PORT backlog=4096;
        listen 127.0.0.1:$GREEN_PORT backlog=4096;
        listen 127.0.0.1:$LIVE_STATUS_PORT;"
render "$HERE/backends.nginx.conf" "$TMP/shadow-backend/nginx.conf" USER="$USER_LINE" WORKERS=1 DIR="$TMP/shadow-backend" \
	LISTEN="        listen 127.0.0.1:$SHADOW_PORT backlog=4096;
        listen 127.0.0.1:$SHADOW_STATUS_PORT;"
start_nginx backends "$TMP/backends/nginx.conf" "$BACKEND_CPUS"
BACKENDS_PID=$STARTED
start_nginx shadow-backend "$TMP/shadow-backend/nginx.conf" "$BACKEND_CPUS"
SHADOW_BACKEND_PID=$STARTED
wait_ready "$BACKENDS_PID" "http://127.0.0.1:$BLUE_PORT/fraud/predict" || die "backends did not start: $(cat "$TMP/backends/"*.log)"
wait_ready "$BACKENDS_PID" "http://127.0.0.1:$GREEN_PORT/fraud/predict" || die "green backend did not start"
wait_ready "$SHADOW_BACKEND_PID" "http://127.0.0.1:$SHADOW_PORT/fraud/predict" || die "shadow backend did not start: $(cat "$TMP/shadow-backend/"*.log)"
log "backends: blue :$BLUE_PORT, green :$GREEN_PORT, shadow :$SHADOW_PORT"

# shadow_hits: requests the shadow backend has served so far (its own status
# requests included; run.sh takes differences, so they cancel out but one).
shadow_hits() {
	curl -s "http://127.0.0.1:$SHADOW_STATUS_PORT/__status" | awk 'NR==3 {print $3}'
}

# --- setups -----------------------------------------------------------------

# start_setup SETUP DIR: starts the gateway, sets GW_PID (empty for direct) and URL.
start_setup() {
	local setup=$1 dir=$2 port
	port=$(free_port)
	GW_PID=""
	URL="http://127.0.0.1:$port/fraud/predict"
	case $setup in
	direct)
		URL="http://127.0.0.1:$BLUE_PORT/fraud/predict"
		return 0
		;;
	nginx | nginx-mirror | nginx-tls)
		local mirror="" ssl="" ssl_conf=""
		[ "$setup" = nginx-mirror ] && mirror="            mirror /_mirror;
            mirror_request_body on;"
		if [ "$setup" = nginx-tls ]; then
			ssl="ssl "
			ssl_conf="        ssl_certificate $TMP/tls/gateway.crt;
        ssl_certificate_key $TMP/tls/gateway.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;"
			URL="https://127.0.0.1:$port/fraud/predict"
		fi
		mkdir -p "$dir"
		render "$HERE/nginx-split.conf" "$dir/nginx.conf" USER="$USER_LINE" DIR="$dir" PORT="$port" \
			BLUE_PORT="$BLUE_PORT" GREEN_PORT="$GREEN_PORT" SHADOW_PORT="$SHADOW_PORT" MIRROR_ON="$mirror" \
			SSL="$ssl" SSL_CONF="$ssl_conf"
		start_nginx "${dir#"$TMP"/}" "$dir/nginx.conf" "$GATEWAY_CPUS"
		GW_PID=$STARTED
		;;
	haproxy)
		mkdir -p "$dir"
		render "$HERE/haproxy.cfg" "$dir/haproxy.cfg" DIR="$dir" PORT="$port" \
			BLUE_PORT="$BLUE_PORT" GREEN_PORT="$GREEN_PORT"
		(pin "$GATEWAY_CPUS" "$HAPROXY" -db -f "$dir/haproxy.cfg") >"$dir/stdout.log" 2>&1 &
		GW_PID=$!
		PIDS+=("$GW_PID")
		;;
	mg | mg-mirror | mg-tls | mg-etcd)
		local mirror="" compare="" tls="" etcd=""
		if [ "$setup" = mg-etcd ]; then
			ETCD_PREFIXES=$((ETCD_PREFIXES + 1))
			etcd="  etcd: {endpoints: [http://127.0.0.1:$ETCD_PORT], prefix: /bench/$ETCD_PREFIXES/}"
		fi
		if [ "$setup" = mg-mirror ]; then
			mirror="    mirror: {shadow: 10}"
			compare="    compare: {protocol: kserve_v1, comparator: numeric}"
		fi
		if [ "$setup" = mg-tls ]; then
			tls="tls: {cert_file: $TMP/tls/gateway.crt, key_file: $TMP/tls/gateway.key}"
			URL="https://127.0.0.1:$port/fraud/predict"
		fi
		ADMIN_PORT=$(free_port)
		mkdir -p "$dir"
		render "$HERE/modelgate.yaml" "$dir/modelgate.yaml" DIR="$dir" PORT="$port" ADMIN_PORT="$ADMIN_PORT" \
			BLUE_PORT="$BLUE_PORT" GREEN_PORT="$GREEN_PORT" SHADOW_PORT="$SHADOW_PORT" MIRROR="$mirror" COMPARE="$compare" TLS="$tls" ETCD="$etcd"
		(cd "$dir" && pin "$GATEWAY_CPUS" "$MG" serve --config "$dir/modelgate.yaml") >"$dir/modelgate.log" 2>&1 &
		GW_PID=$!
		PIDS+=("$GW_PID")
		;;
	*) die "unknown setup $setup" ;;
	esac
	wait_ready "$GW_PID" "$URL" || die "$setup did not start; see $dir: $(tail -5 "$dir"/*.log 2>/dev/null)"
}

# shadow_counts: mirrored compared dropped, summed over modelgate's
# modelgate_shadow_requests_total; "n/a n/a n/a" when the series is absent.
shadow_counts() {
	curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
		/^modelgate_shadow_requests_total[{]/ {
			seen = 1
			match($0, /result="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9)
			v = $NF + 0
			if (r == "mirrored") m += v
			else if (r == "matched" || r == "mismatched") c += v
			else if (r == "dropped") d += v
		}
		END { if (seen) printf "%d %d %d\n", m, c, d; else print "n/a n/a n/a" }'
}

run_wrk() { # run_wrk CONNS DURATION URL: prints wrk's output (RESULT line included)
	(pin "$WRK_CPUS" "$WRK" -t "$THREADS" -c "$1" -d "$2" --latency -s "$HERE/post.lua" "$3")
}

# --- measure ------------------------------------------------------------------

RAW=$TMP/results.tsv
printf 'round\tsetup\tconns\trps\tp50_us\tp99_us\trss_kib\terrors\trequests\tshadow_hits\tmirrored\tcompared\tdropped\tcpu_us_per_req\tsys_pct\tsyscalls_per_req\tloadavg1\n' >"$RAW"
max_conns=$(printf '%s\n' $CONNS | sort -n | tail -1)
nsetups=$(wc -w <<<"$SETUPS")
nconns=$(wc -w <<<"$CONNS")
log "modelgate: $MG_SRC"
log "$ROUNDS rounds x $nconns connection counts x $nsetups setups, $DURATION each (+ $WARMUP warm-up)"

for round in $(seq "$ROUNDS"); do
	for c in $CONNS; do
		for setup in $SETUPS; do
			dir=$TMP/r$round-c$c-$setup
			mkdir -p "$dir"
			start_setup "$setup" "$dir"
			if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
				run_wrk "$c" "$WARMUP" "$URL" >"$dir/warmup.txt" 2>&1 || true
			fi
			hits0=$(shadow_hits)
			pt0="0 0 0 0"
			if [ -n "$GW_PID" ]; then pt0=$(proc_totals "$GW_PID"); fi
			counts0="n/a n/a n/a"
			case $setup in mg-mirror) counts0=$(shadow_counts) ;; esac
			run_wrk "$c" "$DURATION" "$URL" >"$dir/wrk.txt" 2>&1 || die "wrk failed: $(cat "$dir/wrk.txt")"
			rss="-" cpu_us="-" sys_pct="-" sysc="-"
			if [ -n "$GW_PID" ]; then
				rss=$(peak_rss_kib "$GW_PID")
				pt1=$(proc_totals "$GW_PID")
			fi
			counts="n/a n/a n/a"
			case $setup in mg-mirror)
				sleep 1 # let the shadow queue drain before counting
				counts=$(shadow_counts) ;;
			esac
			if [ "$setup" = nginx-mirror ]; then sleep 1; fi # mirror subrequests still in flight
			hits1=$(shadow_hits)
			hits=$((hits1 - hits0 - 1)) # minus the status request itself
			if [ -n "$GW_PID" ]; then stop_pid "$GW_PID"; fi
			read -r m0 c0 d0 <<<"$counts0"
			read -r m1 c1 d1 <<<"$counts"
			if [ "$m1" = n/a ]; then mir=n/a cmp=n/a drp=n/a; else
				mir=$((m1 - m0)) cmp=$((c1 - c0)) drp=$((d1 - d0))
			fi
			line=$(grep '^RESULT ' "$dir/wrk.txt") || die "no RESULT line from wrk: $(cat "$dir/wrk.txt")"
			declare -A R=()
			for kv in ${line#RESULT }; do R[${kv%%=*}]=${kv#*=}; done
			errors=$((R[non2xx] + R[connect] + R[read] + R[write] + R[timeout]))
			if [ -n "$GW_PID" ]; then
				read -r cpu_us sys_pct sysc < <(awk -v a="$pt0" -v b="$pt1" -v n="${R[requests]}" -v hz="$CLK_TCK" 'BEGIN {
					split(a, x, " "); split(b, y, " ")
					u = y[1] - x[1]; s = y[2] - x[2]; t = u + s
					printf "%.1f %.0f %.2f\n", n ? t / hz * 1e6 / n : 0, t ? 100 * s / t : 0, n ? (y[3] - x[3] + y[4] - x[4]) / n : 0 }')
			fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$setup" "$c" \
				"${R[rps]}" "${R[p50_us]}" "${R[p99_us]}" "$rss" "$errors" "${R[requests]}" "$hits" "$mir" "$cmp" "$drp" \
				"$cpu_us" "$sys_pct" "$sysc" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
			log "round $round c=$c $(printf '%-12s' "$setup") $(printf '%8.0f' "${R[rps]}") req/s  p50 $(awk -v u="${R[p50_us]}" 'BEGIN{printf "%.2f", u/1000}') ms  p99 $(awk -v u="${R[p99_us]}" 'BEGIN{printf "%.2f", u/1000}') ms  rss ${rss} KiB  cpu ${cpu_us} us/req (${sys_pct}% sys, ${sysc} syscalls/req)  errors $errors  shadow hits $hits"
		done
	done
done

# --perf: one extra, unmeasured run of each modelgate setup at the largest
# connection count, with perf sampling the gateway (it is not in the tables:
# sampling costs the gateway CPU).
if [ "$PERF" = 1 ]; then
	for setup in $SETUPS; do
		case $setup in mg*) ;; *) continue ;; esac
		dir=$TMP/perf-c$max_conns-$setup
		mkdir -p "$dir"
		start_setup "$setup" "$dir"
		if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
			run_wrk "$max_conns" "$WARMUP" "$URL" >"$dir/warmup.txt" 2>&1 || true
		fi
		perf record -F 999 -g -o "$dir/perf.data" -p "$GW_PID" >"$dir/perf.log" 2>&1 &
		perf_pid=$!
		PIDS+=("$perf_pid")
		run_wrk "$max_conns" "$DURATION" "$URL" >"$dir/wrk.txt" 2>&1 || true
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
		stop_pid "$perf_pid"
		stop_pid "$GW_PID"
		perf report -i "$dir/perf.data" --no-children --sort dso --stdio -g none \
			>"$dir/perf-dso.txt" 2>/dev/null || true
		perf report -i "$dir/perf.data" --no-children --percent-limit 0.5 --stdio --sort symbol \
			-g none >"$dir/perf-flat.txt" 2>/dev/null || true
		perf report -i "$dir/perf.data" --children --percent-limit 0.3 --stdio --sort symbol \
			-g none >"$dir/perf-children.txt" 2>/dev/null || true
		log "perf profile of $setup at $max_conns connections: $dir/perf-{dso,flat,children}.txt"
	done
fi

# --- report -------------------------------------------------------------------

report() {
	awk -F'\t' -v setups="$SETUPS" -v conns="$CONNS" -v rounds="$ROUNDS" -v dur="$DURATION" '
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
		if (n == 0) return ""
		return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	function lo(s,   a, n, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
	function hi(s,   a, n, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
	function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2fx", a / b) }
	function yn(ok) { return ok ? "yes" : "**no**" }
	NR == 1 { next }
	{
		k = $2 SUBSEP $3
		rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
		round[k SUBSEP $1] = $4
		if ($7 != "-") rss[k] = rss[k] " " $7
		if ($14 != "-") { cpu[k] = cpu[k] " " $14; sys[k] = sys[k] " " $15; sc[k] = sc[k] " " $16 }
		err[k] += $8; req[k] += $9; hits[k] += $10
		if ($11 == "n/a") na[k] = 1; else { mir[k] += $11; cmp[k] += $12; drp[k] += $13 }
	}
	END {
		ns = split(setups, S, " "); nc = split(conns, C, " ")
		printf "Medians of %d rounds, %s each (wrk, POST, keep-alive). Range: min-max requests/s over the rounds. Peak RSS: the\n", rounds, dur
		print "largest VmHWM over the rounds, master and workers summed. Gateway CPU: user+system time of the gateway process(es)"
		print "per request; syscalls: read+write system calls (/proc/PID/io syscr+syscw) per request, shown for modelgate only; they"
		print "miss recv/send/writev, which nginx, HAProxy and the event loops of modelgate use (so mg shows the calls of its goroutines only).\n"
		print "| setup | conns | requests/s | range | p50 ms | p99 ms | peak RSS MiB | gateway CPU us/req | sys % | syscalls/req | errors |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (c = 1; c <= nc; c++) for (s = 1; s <= ns; s++) {
			k = S[s] SUBSEP C[c]
			if (!(k in rps)) continue
			R[k] = median(rps[k]); P50[k] = median(p50[k]); P99[k] = median(p99[k])
			printf "| %s | %s | %.0f | %.0f-%.0f | %.2f | %.2f | %s | %s | %s | %s | %d |\n", S[s], C[c], R[k], lo(rps[k]), hi(rps[k]),
				P50[k] / 1000, P99[k] / 1000, (k in rss) ? sprintf("%.1f", hi(rss[k]) / 1024) : "-",
				(k in cpu) ? sprintf("%.1f", median(cpu[k])) : "-", (k in cpu) ? sprintf("%.0f", median(sys[k])) : "-",
				((k in cpu) && S[s] ~ /^mg/) ? sprintf("%.2f", median(sc[k])) : "-", err[k]
		}
		print ""
		print "Ratios of the medians (requests/s: higher is better; p99: lower is better):\n"
		print "| conns | mg/nginx rps | mg/haproxy rps | mg p99 / nginx p99 | mg p99 / haproxy p99 | mg p99 / better p99 | mg-mirror/nginx-mirror rps | mg-mirror/nginx-mirror p99 | mg/direct rps |"
		print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (c = 1; c <= nc; c++) {
			m = "mg" SUBSEP C[c]; n = "nginx" SUBSEP C[c]; h = "haproxy" SUBSEP C[c]
			mm = "mg-mirror" SUBSEP C[c]; nm = "nginx-mirror" SUBSEP C[c]; d = "direct" SUBSEP C[c]
			better = ""
			if ((n in rps) && (h in rps)) better = (P99[n] < P99[h]) ? P99[n] : P99[h]
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", C[c], ratio(R[m], R[n]), ratio(R[m], R[h]),
				ratio(P99[m], P99[n]), ratio(P99[m], P99[h]), ratio(P99[m], better),
				ratio(R[mm], R[nm]), ratio(P99[mm], P99[nm]), ratio(R[m], R[d])
		}
		print ""
		if ((("mg-tls" SUBSEP C[1]) in rps) || (("nginx-tls" SUBSEP C[1]) in rps)) {
			print "TLS (issue 18, report only): clients over TLS to the gateway, plain HTTP to the backends; modelgate serves TLS"
			print "connections with its goroutine engine (fasthttp server on crypto/tls), nginx with its workers (OpenSSL).\n"
			print "| conns | mg-tls/nginx-tls rps | mg-tls p99 / nginx-tls p99 | mg-tls/mg rps | nginx-tls/nginx rps |"
			print "|---:|---:|---:|---:|---:|"
			for (c = 1; c <= nc; c++) {
				m = "mg" SUBSEP C[c]; n = "nginx" SUBSEP C[c]; mt = "mg-tls" SUBSEP C[c]; nt = "nginx-tls" SUBSEP C[c]
				printf "| %s | %s | %s | %s | %s |\n", C[c], ratio(R[mt], R[nt]), ratio(P99[mt], P99[nt]), ratio(R[mt], R[m]), ratio(R[nt], R[n])
			}
			print ""
		}
		if ((("mg-etcd" SUBSEP C[1]) in rps) && (("mg" SUBSEP C[1]) in rps)) {
			print "State in etcd (issue 19): requests/s of mg-etcd over mg, round by round (each round measures mg, then mg-etcd,"
			print "on fresh processes; the data plane reads its routes from memory either way). Target: median ratio >= 0.95.\n"
			print "| conns | round | mg rps | mg-etcd rps | mg-etcd/mg |"
			print "|---:|---:|---:|---:|---:|"
			for (c = 1; c <= nc; c++) {
				rs = ""
				for (r = 1; r <= rounds; r++) {
					a = round["mg" SUBSEP C[c] SUBSEP r]; b = round["mg-etcd" SUBSEP C[c] SUBSEP r]
					if (a == "" || b == "") continue
					printf "| %s | %d | %.0f | %.0f | %.3f |\n", C[c], r, a, b, b / a
					rs = rs " " (b / a)
				}
				if (rs != "") printf "| %s | median | | | **%.3f** (%s) |\n", C[c], median(rs), yn(median(rs) >= 0.95)
			}
			print ""
		}
		print "Issue 6 targets (per connection count): mg >= 1.0x nginx and >= 0.9x haproxy in requests/s, mg p99 <= 1.1x the better"
		print "of the two; mg-mirror >= 1.0x nginx-mirror with at most 1% of the copies dropped.\n"
		print "| conns | mg >= 1.0x nginx | mg >= 0.9x haproxy | mg p99 <= 1.1x better | mg-mirror >= 1.0x nginx-mirror | drops <= 1% |"
		print "|---:|:-:|:-:|:-:|:-:|:-:|"
		for (c = 1; c <= nc; c++) {
			m = "mg" SUBSEP C[c]; n = "nginx" SUBSEP C[c]; h = "haproxy" SUBSEP C[c]
			mm = "mg-mirror" SUBSEP C[c]; nm = "nginx-mirror" SUBSEP C[c]
			better = ((n in rps) && (h in rps)) ? ((P99[n] < P99[h]) ? P99[n] : P99[h]) : ""
			printf "| %s | %s | %s | %s | %s | %s |\n", C[c],
				((m in rps) && (n in rps)) ? yn(R[m] >= R[n]) : "-", ((m in rps) && (h in rps)) ? yn(R[m] >= 0.9 * R[h]) : "-",
				((m in rps) && better != "") ? yn(P99[m] <= 1.1 * better) : "-",
				((mm in rps) && (nm in rps)) ? yn(R[mm] >= R[nm]) : "-",
				(mm in rps) ? ((hits[mm] == 0) ? "not mirroring" : (mm in na) ? "n/a" : yn(mir[mm] > 0 && drp[mm] <= 0.01 * mir[mm])) : "-"
		}
		print ""
		print "Mirroring, summed over the measured runs (shadow hits: requests the shadow backend served; mirrored, compared,"
		print "dropped: modelgate_shadow_requests_total, compared = matched + mismatched; n/a: the series does not exist):\n"
		print "| setup | conns | live requests | shadow hits | hits % | mirrored | compared | dropped |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		for (c = 1; c <= nc; c++) for (s = 1; s <= ns; s++) {
			k = S[s] SUBSEP C[c]
			if (!(k in rps) || S[s] !~ /mirror/) continue
			if (S[s] !~ /^mg/) printf "| %s | %s | %d | %d | %.2f | - | - | - |\n", S[s], C[c], req[k], hits[k], 100 * hits[k] / req[k]
			else if (k in na) printf "| %s | %s | %d | %d | %.2f | n/a | n/a | n/a |\n", S[s], C[c], req[k], hits[k], 100 * hits[k] / req[k]
			else printf "| %s | %s | %d | %d | %.2f | %d | %d | %d |\n", S[s], C[c], req[k], hits[k], 100 * hits[k] / req[k], mir[k], cmp[k], drp[k]
		}
	}' "$RAW"
}

{
	echo "modelgate: $MG_SRC; $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
	echo "$($NGINX -v 2>&1 | sed 's/^nginx version: //'), $($HAPROXY -v | head -1 | awk '{print "HAProxy " $3}'), $($WRK -v 2>&1 | head -1 | awk '{print $1, $2}'), $(go version | awk '{print $3}')"
	echo "pinning: gateway ${GATEWAY_CPUS:-none}, backends ${BACKEND_CPUS:-none}, wrk ${WRK_CPUS:-none}; wrk -t $THREADS"
	echo "1-minute load average at the end of the measurements: $(awk -F'\t' 'NR > 1 { if (n++ == 0 || $17 < lo) lo = $17; if ($17 > hi) hi = $17 } END { printf "%s to %s", lo, hi }' "$RAW") (on $(nproc) CPUs)"
	echo
	report
} >"$TMP/report.md"
cat "$TMP/report.md"
if [ -n "$OUT" ]; then
	mkdir -p "$(dirname "$OUT")"
	cp "$TMP/report.md" "$OUT"
	cp "$RAW" "${OUT%.md}.tsv"
	log "wrote $OUT and ${OUT%.md}.tsv"
fi
if [ "$PERF" = 1 ]; then
	if [ -n "$OUT" ]; then
		for f in "$TMP"/perf-*/perf-*.txt; do
			if [ -f "$f" ]; then cp "$f" "$(dirname "$OUT")/$(basename "$(dirname "$f")")-$(basename "$f")"; fi
		done
		log "perf reports copied next to $OUT"
	fi
	KEEP=1 # perf.data files stay in the temp dir for perf report
fi
