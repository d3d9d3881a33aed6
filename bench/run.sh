#!/usr/bin/env bash
# bench/run.sh — evloop side by side with libuv, libevent, libev, a raw epoll
# loop, Redis and nginx, on the same load in one run (bench/README.md).
#
#   bench/run.sh [--quick] [--reps N] [--rows a,b,...] [--list]
#
# Every echo row is run for every server, the servers in a rotated order on
# each repetition, three repetitions (one with --quick or BENCH_QUICK=1),
# each run against a freshly started server pinned to one core while the
# client runs on another. Medians and ratios go to build/reports/bench.md,
# bench.json and bench.png; raw outputs stay under build/bench/run/.
# Environment: BUILD (default build), EVL_SERVER (the evl-testsrv to
# measure, default $BUILD/evl-testsrv), BENCH_QUICK=1.
# Exit status: 0 when every run produced a number, 1 otherwise, 2 on bad use.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

BUILD=${BUILD:-build}
QUICK=${BENCH_QUICK:-0}
EVL_SERVER=${EVL_SERVER:-$BUILD/evl-testsrv}
REPORTS=$BUILD/reports
WORK=$BUILD/bench/run
LDGEN=$BUILD/bench/ldgen
PEERS=$BUILD/bench
PYTHON=${PYTHON:-/usr/bin/python3}
ONLY=""
REPS=""

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
ALL_ROWS="pp1 pp100 pipe16 pump idle instr resp http timers"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --reps) [ $# -ge 2 ] || usage; REPS=$2; shift ;;
    --rows) [ $# -ge 2 ] || usage; ONLY=${2//,/ }; shift ;;
    --list) echo "$ALL_ROWS"; exit 0 ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
for r in $ONLY; do [[ " $ALL_ROWS " == *" $r "* ]] || { echo "run.sh: no row '$r' (--list)" >&2; exit 2; }; done
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# ---- sizes: the full run stays under 10 minutes, --quick near one ----------
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}; DUR=1; WARM=0.2; IDLE_CONNS=1000; CG_MSGS=2000
  RB_N1=20000; RB_N16=200000; WRK_DUR=1
else
  REPS=${REPS:-3}; DUR=2; WARM=0.5; IDLE_CONNS=5000; CG_MSGS=20000
  RB_N1=100000; RB_N16=1000000; WRK_DUR=3
fi
HTTP_BODY='hello, world'   # what evl-testsrv --mode http answers (plus "\n")

# ---- cores: server on one, client on another, when there are two -----------
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_SRV=(taskset -c 0); PIN_CLI=(taskset -c 1); PINNED="server cpu0, client cpu1"
else
  PIN_SRV=(); PIN_CLI=(); PINNED="not pinned (fewer than 2 cpus or no taskset)"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null   # 5000 idle connections on both sides

rm -rf "$WORK"; mkdir -p "$WORK" "$REPORTS"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
FAILS=0

# ---- processes: every one started here is stopped by its PID ---------------
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alive() { # running, and not a zombie waiting to be reaped
  local s
  s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$s" != Z ]
}

stop_pid() { # TERM, up to 10 s to exit (valgrind writes its file), then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 200; i++)); do alive "$pid" || break; sleep 0.05; done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local rc=$?
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  return $rc
}

# start_listening LOG TIMEOUT CMD...: a server that prints LISTENING <port>.
# Sets SRV_PID and SRV_PORT; returns 1 if it died or stayed silent.
start_listening() {
  local log=$1 t=$2 i; shift 2
  "${PIN_SRV[@]}" "$@" >"$log.out" 2>"$log.err" &
  SRV_PID=$!; PIDS+=("$SRV_PID"); SRV_PORT=""
  for ((i = 0; i < t * 20; i++)); do
    SRV_PORT=$(sed -n 's/^LISTENING \([0-9]*\)$/\1/p' "$log.out" 2>/dev/null)
    [ -n "$SRV_PORT" ] && return 0
    alive "$SRV_PID" || break
    sleep 0.05
  done
  echo "run.sh: $* did not listen (see $log.err)" >&2
  stop_pid "$SRV_PID"
  return 1
}

# A port that was free a moment ago, for servers that cannot take port 0.
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_on_port LOG PORT CMD...: a server that does not say when it listens:
# wait until a connection to PORT succeeds.
start_on_port() {
  local log=$1 port=$2 i; shift 2
  "${PIN_SRV[@]}" "$@" >"$log.out" 2>"$log.err" &
  SRV_PID=$!; PIDS+=("$SRV_PID"); SRV_PORT=$port
  for ((i = 0; i < 200; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    alive "$SRV_PID" || break
    sleep 0.05
  done
  echo "run.sh: $* did not listen on $port (see $log.err)" >&2
  stop_pid "$SRV_PID"
  return 1
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
fail() { # rows server rep why: every row in the space-separated list
  local r
  for r in $1; do
    FAILS=$((FAILS + 1)); record "$r" "$2" "$3" nan
    printf '  %-13s %-9s rep %s: FAILED (%s)\n' "$r" "$2" "$3" "$4" >&2
  done
}
json_num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2" | head -1; }

# rotate N WORDS...: the words, starting at the (N mod count)-th.
rotate() {
  local n=$1; shift
  local a=("$@") k=${#a[@]} i
  for ((i = 0; i < k; i++)); do printf '%s ' "${a[$(((i + n) % k))]}"; done
}

# ---- the echo servers ---------------------------------------------------------
ECHO_SERVERS="evloop libuv libevent libev raw"
echo_cmd() {
  case $1 in
    evloop) echo "$EVL_SERVER --mode echo --port 0" ;;
    raw) echo "$PEERS/echo_raw --port 0" ;;
    *) echo "$PEERS/echo_$1 --port 0" ;;
  esac
}

# One measurement of one echo row against a fresh server.
echo_run() {
  local row=$1 srv=$2 rep=$3 log=$WORK/$1.$2.$3
  # shellcheck disable=SC2046  # the command is a list of words
  start_listening "$log" 10 $(echo_cmd "$srv") || { fail "$row" "$srv" "$rep" "start"; return; }
  local args
  case $row in
    pp1) args=(pingpong --conns 1 --size 64 --duration "$DUR" --warmup "$WARM") ;;
    pp100) args=(pingpong --conns 100 --size 64 --duration "$DUR" --warmup "$WARM") ;;
    pipe16) args=(pingpong --conns 10 --size 64 --depth 16 --duration "$DUR" --warmup "$WARM") ;;
    pump) args=(pump --conns 1 --size 65536 --duration "$DUR" --warmup "$WARM") ;;
    idle) args=(idle --conns "$IDLE_CONNS" --pid "$SRV_PID" --settle 0.3) ;;
  esac
  if "${PIN_CLI[@]}" "$LDGEN" "${args[@]}" --port "$SRV_PORT" --json >"$log.json" 2>"$log.ldgen"; then
    record "$row" "$srv" "$rep" "$(json_num rate "$log.json")"
  else
    fail "$row" "$srv" "$rep" "$(tail -1 "$log.ldgen")"
  fi
  stop_pid "$SRV_PID" || echo "  note: $srv exited non-zero after $row" >&2
}

# Instructions per echoed message: callgrind counts every user-space
# instruction of the server process (its libraries and libc included, the
# kernel not). Run once with CG_MSGS ping-pong messages on one connection and
# once with none (start, one accept, one close, SIGTERM); the difference over
# CG_MSGS is the cost of one echo, start-up and shutdown subtracted.
callgrind_ir() { # srv msgs -> prints total Ir
  local srv=$1 m=$2 log=$WORK/instr.$1.$2
  # shellcheck disable=SC2046
  start_listening "$log" 60 valgrind --tool=callgrind --callgrind-out-file="$log.cg" \
    $(echo_cmd "$srv") || return 1
  "${PIN_CLI[@]}" "$LDGEN" pingpong --conns 1 --size 64 --msgs "$m" --timeout 300 --port "$SRV_PORT" \
    --json >"$log.json" 2>"$log.ldgen" || { stop_pid "$SRV_PID"; return 1; }
  stop_pid "$SRV_PID" || return 1
  sed -n 's/^totals: \([0-9]*\)$/\1/p' "$log.cg"
}

instr_run() {
  local srv=$1 base full
  base=$(callgrind_ir "$srv" 0) && full=$(callgrind_ir "$srv" "$CG_MSGS") && [ -n "$base" ] && [ -n "$full" ] ||
    { fail instr "$srv" 1 "callgrind run"; return; }
  record instr "$srv" 1 "$(awk -v a="$base" -v b="$full" -v m="$CG_MSGS" 'BEGIN { printf "%.1f", (b - a) / m }')"
  printf '%s\t%s\t%s\t%s\n' "$srv" "$base" "$full" "$CG_MSGS" >>"$WORK/instr.tsv"
}

# ---- redis-benchmark: evl-testsrv --mode resp against redis-server ------------
resp_run() {
  local srv=$1 p=$2 rep=$3 log=$WORK/resp.$1.p$2.$3 n rows="rb_inline_p$2 rb_mbulk_p$2"
  n=$([ "$p" = 1 ] && echo "$RB_N1" || echo "$RB_N16")
  if [ "$srv" = evloop ]; then
    start_listening "$log" 10 "$EVL_SERVER" --mode resp --port 0 || { fail "$rows" "$srv" "$rep" start; return; }
  else
    local port; port=$(free_port)
    start_on_port "$log" "$port" redis-server --port "$port" --bind 127.0.0.1 --save '' \
      --appendonly no --daemonize no --logfile "" --dir "$WORK" || { fail "$rows" "$srv" "$rep" start; return; }
  fi
  "${PIN_CLI[@]}" redis-benchmark -h 127.0.0.1 -p "$SRV_PORT" -t ping_inline,ping_mbulk \
    -n "$n" -c 50 -P "$p" -q >"$log.rb" 2>&1
  local t v
  for t in inline mbulk; do
    v=$(tr '\r' '\n' <"$log.rb" | sed -n "s/^PING_${t^^}: \([0-9.]*\) requests per second.*/\1/p" | tail -1)
    if [ -n "$v" ]; then record "rb_${t}_p$p" "$srv" "$rep" "$v"; else fail "rb_${t}_p$p" "$srv" "$rep" "no result"; fi
  done
  stop_pid "$SRV_PID" || true
}

# ---- wrk: evl-testsrv --mode http against nginx with one worker ----------------
nginx_conf() { # port -> writes $BUILD/bench/nginx/nginx.conf
  local dir; dir=$(realpath -m "$BUILD/bench/nginx")
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# Generated by bench/run.sh: one process, no logs, a fixed small body.
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000000;
    default_type text/plain;
    server {
        listen 127.0.0.1:$1;
        location / { return 200 "$HTTP_BODY\n"; }
    }
}
EOF
  echo "$dir"
}

http_run() {
  local srv=$1 rep=$2 log=$WORK/http.$1.$2
  if [ "$srv" = evloop ]; then
    start_listening "$log" 10 "$EVL_SERVER" --mode http --port 0 || { fail http "$srv" "$rep" start; return; }
  else
    local port dir; port=$(free_port); dir=$(nginx_conf "$port")
    start_on_port "$log" "$port" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ||
      { fail http "$srv" "$rep" start; return; }
  fi
  "${PIN_CLI[@]}" wrk -t 1 -c 50 -d "${WRK_DUR}s" "http://127.0.0.1:$SRV_PORT/" >"$log.wrk" 2>&1
  local v; v=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$log.wrk")
  if [ -z "$v" ]; then fail http "$srv" "$rep" "no result"
  elif grep -qE 'Non-2xx|Socket errors' "$log.wrk"; then fail http "$srv" "$rep" "$(grep -E 'Non-2xx|Socket errors' "$log.wrk" | head -1)"
  else record http "$srv" "$rep" "$v"; fi
  stop_pid "$SRV_PID" || true
}

# ---- the run -----------------------------------------------------------------------
for b in "$EVL_SERVER" "$LDGEN" "$PEERS"/echo_{raw,libuv,libevent,libev}; do
  [ -x "$b" ] || { echo "run.sh: $b is missing (make bench builds it)" >&2; exit 2; }
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
echo "bench: $([ "$QUICK" = 1 ] && echo quick || echo full), $REPS repetition(s), $PINNED, load $LOAD_BEFORE"

# A discarded warm-up: the first run after a quiet spell is slow whatever the
# server (cpu frequency, idle states of a virtual machine), and would
# penalise whoever comes first.
if start_listening "$WORK/warmup" 10 "$PEERS/echo_raw" --port 0; then
  "${PIN_CLI[@]}" "$LDGEN" pingpong --conns 10 --duration 1 --warmup 0 --port "$SRV_PORT" >/dev/null 2>&1
  stop_pid "$SRV_PID"
fi

for ((rep = 1; rep <= REPS; rep++)); do
  for row in pp1 pp100 pipe16 pump idle; do
    want "$row" || continue
    # shellcheck disable=SC2046
    for srv in $(rotate $((rep - 1)) $ECHO_SERVERS); do echo_run "$row" "$srv" "$rep"; done
    printf '  rep %d %-7s done (%ds)\n' "$rep" "$row" $(($(date +%s) - T0))
  done
  if want resp; then
    for p in 1 16; do
      for srv in $(rotate $((rep - 1)) evloop redis); do resp_run "$srv" "$p" "$rep"; done
    done
    printf '  rep %d %-7s done (%ds)\n' "$rep" resp $(($(date +%s) - T0))
  fi
  if want http; then
    for srv in $(rotate $((rep - 1)) evloop nginx); do http_run "$srv" "$rep"; done
    printf '  rep %d %-7s done (%ds)\n' "$rep" http $(($(date +%s) - T0))
  fi
done
# A million timers armed and fired (libuv's million_timers shape), per rep.
if want timers; then
  for ((rep = 1; rep <= REPS; rep++)); do
    for srv in $(rotate $((rep - 1)) evloop libuv); do
      out=$("${PIN_SRV[@]}" timeout 120 "$PEERS/timers_$srv" 2>"$WORK/timers.$srv.$rep.err")
      v=$(echo "$out" | sed -n "s/.* cpu_ms \\([0-9.]*\\)$/\\1/p")
      if [ -n "$v" ]; then record timers "$srv" "$rep" "$v"; else fail timers "$srv" "$rep" "no output"; fi
    done
  done
  printf '  timers        done (%ds)\n' $(($(date +%s) - T0))
fi
# Instruction counts do not depend on the machine's load: one run each.
if want instr; then
  for srv in $ECHO_SERVERS; do instr_run "$srv"; done
  printf '  instr         done (%ds)\n' $(($(date +%s) - T0))
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cat >"$WORK/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "quick": $([ "$QUICK" = 1 ] && echo true || echo false),
 "reps": $REPS, "cpus": $(nproc), "pinning": "$PINNED",
 "load_before": "$LOAD_BEFORE", "load_after": "$LOAD_AFTER",
 "uptime": "$(uptime | sed 's/^ *//')", "seconds": $(($(date +%s) - T0)),
 "kernel": "$(uname -r)", "cpu_model": "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
 "durations": {"pingpong_s": $DUR, "warmup_s": $WARM, "idle_conns": $IDLE_CONNS,
   "callgrind_msgs": $CG_MSGS, "redis_n": [$RB_N1, $RB_N16], "wrk_s": $WRK_DUR}}
EOF
PROFILE=()
[ -s "$WORK/instr.evloop.0.cg" ] && [ -s "$WORK/instr.evloop.$CG_MSGS.cg" ] &&
  PROFILE=(--profile "$WORK/instr.evloop.0.cg" "$WORK/instr.evloop.$CG_MSGS.cg" "$CG_MSGS")
"$PYTHON" bench/report.py --results "$RESULTS" --meta "$WORK/meta.json" --instr "$WORK/instr.tsv" "${PROFILE[@]}" \
  --md "$REPORTS/bench.md" --json "$REPORTS/bench.json" --dat "$WORK/chart.dat" || exit 1
if command -v gnuplot >/dev/null; then
  gnuplot -e "dat='$WORK/chart.dat'; out='$REPORTS/bench.png'" bench/chart.gp 2>"$WORK/gnuplot.err" ||
    { echo "run.sh: gnuplot failed (see $WORK/gnuplot.err)" >&2; FAILS=$((FAILS + 1)); }
fi
cat "$REPORTS/bench.md"
echo "bench: $(($(date +%s) - T0)) s; $REPORTS/bench.md, bench.json, bench.png"
if [ "$FAILS" -gt 0 ]; then echo "bench: FAIL: $FAILS run(s) produced no number" >&2; exit 1; fi
exit 0
