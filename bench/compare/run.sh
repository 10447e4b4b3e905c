#!/usr/bin/env bash
# Prism side by side with HAProxy, nginx and a naive Go proxy, in one run.
#
#   bench/compare/run.sh                 # full run, ~15 min on 2 cores
#   QUICK=1 bench/compare/run.sh         # smoke test, ~2 min
#
# Every setup gets the same load generator (`prism bench -json`), the same two
# echo backends (`prism backend`, policy 7), the same payloads and the same
# CPUs: the proxy is pinned to the first THREADS CPUs, the load generator and
# the backends to the others. The setups:
#   direct   load generator straight to the two backends (no proxy)
#   haproxy  mode tcp, balance roundrobin, nbthread THREADS, maxconn 9000
#   nginx    stream proxy, worker_processes THREADS
#   prism    prism proxy -loops THREADS, backends registered with -proxy
#   naive    bench/naiveproxy (goroutine per connection, encoding/json,
#            one backend dial per request), GOMAXPROCS=THREADS
# Per setup: proxy RSS with IDLE_CONNS idle client connections, then the
# closed-loop matrix (payload 64 B and 4 KiB, pipeline 1 and 16, 32 and 1000
# connections), then an open-loop sweep at SWEEP percent of HAProxy's
# closed-loop maximum for 64B/p1/c32. Proxy CPU time is read from
# /proc/PID/stat around each case.
#
# Output: bench/out/cases/*.json and bench/out/mem/*.json (one per case),
# bench/out/results.json (all of it, with the machine), and from
# bench/compare/report: bench/out/report.md and charts, copied to
# bench/results/.
#
# Environment (defaults in brackets):
#   DURATION [10s]  WARMUP [2s]  THREADS [1]  IDLE_CONNS [10000]
#   SWEEP ["25 50 75"; empty: no sweep]  SWEEP_PIPELINE [1024]  SWEEP_REF [haproxy]
#   PROXIES ["direct haproxy nginx prism naive"]
#   CASES ["64:1:32 64:1:1000 64:16:32 64:16:1000 4096:1:32 ..."]  size:pipeline:conns
#   QUICK=1         2s cases, 1s warmup, 3 cases, sweep 50%, 2000 idle conns
#   OUT [bench/out]  RESULTS [bench/results] (REPORT=0: no report)
#   PORT_BASE [29400] proxy port; backends on the next two (moved up by 100
#                   while taken)
#   PRISM_BIN       use this prism binary instead of building ./cmd/prism
#   NO_INSTALL=1    never run apt-get
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/out}
RESULTS=${RESULTS:-$ROOT/bench/results}
BIN=$OUT/bin
LOGS=$OUT/logs

if [[ ${QUICK:-0} == 1 ]]; then
	DURATION=${DURATION:-2s}
	WARMUP=${WARMUP:-1s}
	CASES=${CASES:-"64:1:32 4096:16:32 64:16:1000"}
	SWEEP=${SWEEP-"50"}
	IDLE_CONNS=${IDLE_CONNS:-2000}
else
	DURATION=${DURATION:-10s}
	WARMUP=${WARMUP:-2s}
	CASES=${CASES:-"64:1:32 64:1:1000 64:16:32 64:16:1000 4096:1:32 4096:1:1000 4096:16:32 4096:16:1000"}
	SWEEP=${SWEEP-"25 50 75"}
	IDLE_CONNS=${IDLE_CONNS:-10000}
fi
THREADS=${THREADS:-1}
PROXIES=${PROXIES:-"direct haproxy nginx prism naive"}
SWEEP_REF=${SWEEP_REF:-haproxy}
# In open loop -pipeline only caps requests in flight per connection: 1024
# (prism bench's own default) leaves the schedule alone.
SWEEP_PIPELINE=${SWEEP_PIPELINE:-1024}
POLICY=7
PORT_BASE=${PORT_BASE:-29400} # proxy on PORT_BASE, backends on the next two
# HAProxy refuses to start unless 2*maxconn fits the open-files limit, and
# nginx needs two files per proxied connection: both hold at most this many.
FD_CAPPED_CONNS=9000

log() { printf '== %s\n' "$*" >&2; }
note() { printf '%s\n' "$*" >>"$OUT/notes.txt"; log "note: $*"; }
has() { [[ " $PROXIES " == *" $1 "* ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- dependencies -----------------------------------------------------------

stream_module() {
	local m
	for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so \
		/usr/share/nginx/modules/ngx_stream_module.so; do
		[[ -f $m ]] && { echo "$m"; return 0; }
	done
	return 1
}

need=()
if has haproxy && ! command -v haproxy >/dev/null; then need+=(haproxy); fi
if has nginx && ! command -v nginx >/dev/null; then need+=(nginx); fi
if has nginx && ! stream_module >/dev/null; then need+=(libnginx-mod-stream); fi
if ((${#need[@]})); then
	if [[ ${NO_INSTALL:-0} == 1 ]]; then
		echo "missing: ${need[*]} (NO_INSTALL=1)" >&2
		exit 1
	fi
	SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
	log "installing ${need[*]}"
	$SUDO apt-get update -q
	# Should the packages start their system services (default configs, other
	# ports), they are left alone: this run starts instances of its own.
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q haproxy nginx libnginx-mod-stream
fi

# HAProxy and nginx want more than the usual 1024 open files.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

# --- build -------------------------------------------------------------------

rm -rf "$OUT/cases" "$OUT/mem" "$LOGS" "$OUT/notes.txt" "$OUT/tmp"
mkdir -p "$BIN" "$OUT/cases" "$OUT/mem" "$LOGS" "$OUT/tmp"
BIN=$(cd "$BIN" && pwd)
: >"$OUT/notes.txt"
log "building"
if [[ -n ${PRISM_BIN:-} ]]; then
	PRISM=$PRISM_BIN
	note "prism binary: $PRISM_BIN (not built from ./cmd/prism)"
else
	go build -o "$BIN/prism" ./cmd/prism
	PRISM=$BIN/prism
fi
go build -o "$BIN/naiveproxy" ./bench/naiveproxy
# The harness and the report are a module of their own (bench/compare/go.mod),
# so the proxy's module does not carry the plotting dependencies; -o is
# absolute because go -C runs in bench/compare.
go -C bench/compare build -o "$BIN/harness" ./harness
go -C bench/compare build -o "$BIN/report" ./report
HARNESS=$BIN/harness

usage_text=$("$PRISM" -h 2>&1 || true)
has_sub() { grep -qE "^[[:space:]]+$1[[:space:]]" <<<"$usage_text"; }
for sub in bench backend; do
	if ! has_sub "$sub"; then
		echo "prism has no '$sub' subcommand yet: cannot run the comparison" >&2
		exit 1
	fi
done
if has prism && ! has_sub proxy; then
	note "prism has no 'proxy' subcommand: prism left out of this run"
	PROXIES=${PROXIES/prism/}
fi

# --- ports -------------------------------------------------------------------

# Find three free ports, moving up by 100 while something else holds them.
for _ in $(seq 20); do
	PROXY_PORT=$PORT_BASE B1=$((PORT_BASE + 1)) B2=$((PORT_BASE + 2))
	port_open $PROXY_PORT || port_open $B1 || port_open $B2 || break
	PORT_BASE=$((PORT_BASE + 100))
done
PROXY_ADDR=127.0.0.1:$PROXY_PORT
log "ports: proxy $PROXY_PORT, backends $B1 $B2"

# --- CPUs --------------------------------------------------------------------

NPROC=$(nproc)
if ((NPROC > THREADS)); then
	cpus() { if (($1 == $2)); then echo "$1"; else echo "$1-$2"; fi; }
	PROXY_CPUS=$(cpus 0 $((THREADS - 1)))
	LOAD_CPUS=$(cpus "$THREADS" $((NPROC - 1)))
	PIN_PROXY=(taskset -c "$PROXY_CPUS")
	PIN_LOAD=(taskset -c "$LOAD_CPUS")
else
	PROXY_CPUS="all"
	LOAD_CPUS="all"
	PIN_PROXY=()
	PIN_LOAD=()
	note "only $NPROC CPUs for $THREADS proxy threads: nothing pinned"
fi
log "proxies on CPUs $PROXY_CPUS, load generator and backends on CPUs $LOAD_CPUS; open files $NOFILE"

# --- processes ---------------------------------------------------------------

PIDS=()
stop_all() {
	local i pid
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_ports_free() {
	local p
	for p in "$@"; do
		for _ in $(seq 100); do
			port_open "$p" || continue 2
			sleep 0.1
		done
		echo "port $p is still in use" >&2
		return 1
	done
}

# start NAME CMD... runs CMD in the background, logging to logs/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$LOGS/$name.log" 2>&1 &
	PIDS+=($!)
	LAST_PID=$!
}

start_backends() { # [proxy address to register with]
	local reg=(-proxy "${1:-}") # an empty -proxy: serve the port only
	start "backend1-$CUR" "${PIN_LOAD[@]}" "$PRISM" backend -port $B1 "${reg[@]}" -id 1 -policy $POLICY -mode echo
	start "backend2-$CUR" "${PIN_LOAD[@]}" "$PRISM" backend -port $B2 "${reg[@]}" -id 2 -policy $POLICY -mode echo
}

haproxy_conf() {
	cat <<EOF
global
    nbthread $THREADS
    maxconn $FD_CAPPED_CONNS
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    maxconn $FD_CAPPED_CONNS
frontend fe
    bind $PROXY_ADDR
    default_backend be
backend be
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
EOF
}

nginx_conf() {
	cat <<EOF
load_module $(stream_module);
daemon off;
master_process on;
worker_processes $THREADS;
worker_rlimit_nofile $NOFILE;
pid $1/nginx.pid;
error_log $1/error.log warn;
events {
    worker_connections $((NOFILE - 100));
}
stream {
    upstream be {
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
    }
    server {
        listen $PROXY_ADDR backlog=4096; # the default, 511, is short for 1000 clients connecting at once
        proxy_pass be;
        proxy_connect_timeout 5s;
        proxy_timeout 60s;
    }
}
EOF
}

# start_setup NAME sets TARGETS (load generator -proxy), PROXY_PIDS (comma
# list, empty for direct) and IDLE_N.
start_setup() {
	CUR=$1
	TARGETS=$PROXY_ADDR
	PROXY_PIDS=
	IDLE_N=$IDLE_CONNS
	wait_ports_free $PROXY_PORT $B1 $B2 || return 1
	case $1 in
	direct)
		start_backends
		TARGETS=127.0.0.1:$B1,127.0.0.1:$B2
		"$HARNESS" probe -addr 127.0.0.1:$B1 -want 1 || return 1
		"$HARNESS" probe -addr 127.0.0.1:$B2 -want 1 || return 1
		return 0
		;;
	haproxy)
		start_backends
		haproxy_conf >"$OUT/tmp/haproxy.cfg"
		start haproxy "${PIN_PROXY[@]}" haproxy -db -f "$OUT/tmp/haproxy.cfg"
		PROXY_PIDS=$LAST_PID
		;;
	nginx)
		start_backends
		local d=$OUT/tmp/nginx
		mkdir -p "$d"
		nginx_conf "$d" >"$d/nginx.conf"
		start nginx "${PIN_PROXY[@]}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
		PROXY_PIDS=$LAST_PID
		;;
	prism)
		start prism "${PIN_PROXY[@]}" "$PRISM" proxy -listen $PROXY_ADDR -admin "" -loops "$THREADS"
		PROXY_PIDS=$LAST_PID
		start_backends $PROXY_ADDR
		;;
	naive)
		start naive env GOMAXPROCS="$THREADS" "${PIN_PROXY[@]}" "$BIN/naiveproxy" -listen $PROXY_ADDR
		PROXY_PIDS=$LAST_PID
		start_backends $PROXY_ADDR
		;;
	esac
	"$HARNESS" probe -addr $PROXY_ADDR -want 2 || return 1
	if [[ $1 == nginx ]]; then
		# Count the workers too: the master only supervises.
		local w
		w=$(pgrep -P "$PROXY_PIDS" | paste -sd, -)
		[[ -n $w ]] && PROXY_PIDS=$PROXY_PIDS,$w
	fi
	if [[ $1 == haproxy || $1 == nginx ]] && ((IDLE_N > FD_CAPPED_CONNS)); then
		IDLE_N=$FD_CAPPED_CONNS
	fi
}

# run_case SIZE PIPELINE CONNS [RATE PCT]
run_case() {
	local size=$1 pipe=$2 conns=$3 rate=${4:-0} pct=${5:-0}
	local file=$OUT/cases/$CUR-${size}B-p$pipe-c$conns.json
	local extra=(-group matrix)
	if ((pct > 0)); then
		file=$OUT/cases/$CUR-sweep$pct.json
		extra=(-group sweep -sweep-pct "$pct" -case "sweep $pct%")
	fi
	local rateflag=()
	((rate > 0)) && rateflag=(-rate "$rate")
	"${PIN_LOAD[@]}" "$HARNESS" case -proxy "$CUR" -out "$file" -pids "$PROXY_PIDS" -warmup "$WARMUP" "${extra[@]}" -- \
		"$PRISM" bench -proxy "$TARGETS" -policy $POLICY -conns "$conns" -pipeline "$pipe" \
		"${rateflag[@]}" -duration "$DURATION" -warmup "$WARMUP" -size "$size" -json \
		2>>"$LOGS/bench-$CUR.log" ||
		note "$CUR: case ${size}B/p$pipe/c$conns${rateflag[*]:+ ${rateflag[*]}} failed (see logs/bench-$CUR.log)"
}

# --- the run -----------------------------------------------------------------

# The sweep's rates are fractions of the reference proxy's maximum, so it
# runs first.
ORDER=()
has "$SWEEP_REF" && ORDER+=("$SWEEP_REF")
for p in $PROXIES; do [[ $p == "$SWEEP_REF" ]] || ORDER+=("$p"); done
[[ " $CASES " == *" 64:1:32 "* ]] || CASES="64:1:32 $CASES"

declare -A RATE=()
SWEEP_MAX=0
START=$(date +%s)
for p in "${ORDER[@]}"; do
	log "$p"
	if ! start_setup "$p"; then
		note "$p: did not start (see $LOGS)"
		stop_all
		continue
	fi
	if [[ -n $PROXY_PIDS ]]; then
		capped=
		((IDLE_N < IDLE_CONNS)) && capped="capped at $IDLE_N: open-files limit $NOFILE, two per proxied connection"
		"${PIN_LOAD[@]}" "$HARNESS" mem -proxy "$p" -addr $PROXY_ADDR -n "$IDLE_N" -pids "$PROXY_PIDS" \
			-note "$capped" -out "$OUT/mem/$p.json" || note "$p: memory case failed"
		sleep 1
	fi
	for c in $CASES; do
		IFS=: read -r size pipe conns <<<"$c"
		run_case "$size" "$pipe" "$conns"
	done
	# The reference runs first; should it have failed, the next one serves.
	ref=$OUT/cases/$p-64B-p1-c32.json
	if [[ -n $SWEEP && $SWEEP_MAX == 0 && -f $ref ]]; then
		[[ $p == "$SWEEP_REF" ]] || note "sweep rates from $p's maximum ($SWEEP_REF missing)"
		SWEEP_REF=$p
		for pct in $SWEEP; do RATE[$pct]=$("$HARNESS" rate -in "$ref" -pct "$pct"); done
		SWEEP_MAX=$("$HARNESS" rate -in "$ref" -pct 100)
	fi
	for pct in $SWEEP; do
		[[ -n ${RATE[$pct]:-} ]] && run_case 64 "$SWEEP_PIPELINE" 32 "${RATE[$pct]}" "$pct"
	done
	stop_all
	sleep 1
done
log "measured in $(($(date +%s) - START))s"

# --- results -----------------------------------------------------------------

HAPROXY_V=$(command -v haproxy >/dev/null && haproxy -v 2>/dev/null | head -1 | awk '{print $3}' || true)
NGINX_V=$(command -v nginx >/dev/null && nginx -v 2>&1 | sed -n 's|.*nginx/||p' || true)
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=false
[[ -n $(git --no-optional-locks status --porcelain 2>/dev/null) ]] && DIRTY=true
"$HARNESS" merge -cases "$OUT/cases" -mem "$OUT/mem" -out "$OUT/results.json" \
	-nproc "$NPROC" -go "$(go env GOVERSION)" -commit "$COMMIT" -dirty="$DIRTY" \
	-haproxy "$HAPROXY_V" -nginx "$NGINX_V" -duration "$DURATION" -warmup "$WARMUP" \
	-quick="$([[ ${QUICK:-0} == 1 ]] && echo true || echo false)" -threads "$THREADS" \
	-proxy-cpus "$PROXY_CPUS" -load-cpus "$LOAD_CPUS" -idle "$IDLE_CONNS" -proxies "${ORDER[*]}" \
	-sweep-ref "$SWEEP_REF" -sweep-max "$SWEEP_MAX" -sweep-pipeline "$SWEEP_PIPELINE" -notes "$OUT/notes.txt"
if [[ ${REPORT:-1} == 1 ]]; then
	"$BIN/report" -in "$OUT/results.json" -out "$OUT" -copy "$RESULTS"
	log "report: $OUT/report.md (copied to $RESULTS)"
fi
