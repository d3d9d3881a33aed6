#!/usr/bin/env bash
# stress/run.sh: what `make stress` and `make stress-quick` run.
#
#   stress/run.sh [--quick] [--plot] [--attacks-only] [--sndbuf-sweep "B..."] [--server PATH] [--client PATH] [--guard PATH]
#
# 1. Starts the test server under nbguard.so (any blocking write-family call
#    aborts it) on a free port, with a small SO_SNDBUF so that slow readers
#    push it into EAGAIN and its own buffers at once.
# 2. Runs slowreaders, fanout and churn against it, sampling its RSS and CPU.
# 3. Stops it with SIGTERM: it must exit 0 (and so write the guard's report).
# 4. Fault rounds, each on a fresh server and each its own row: libfiu makes
#    send/sendmsg fail with EAGAIN at random; strace injects EINTR into
#    epoll_wait. A short slowreaders run (stalled, paced and fast readers, so
#    the loop goes round many times and meets EAGAIN in every state) checks
#    that every BLAST byte still arrives, in order.
# 5. Full run only: slowhttptest attacks (slow read, slowloris headers, slow
#    body) against --mode http, each on a fresh server (stress/README.md,
#    "The attacks"). --attacks-only runs only these; --sndbuf-sweep runs
#    only the slow read, once per SO_SNDBUF in the list (0 = the kernel's),
#    to compare the kernel memory it pins (make stress-sndbuf).
# 6. One table, build/reports/stress.json and stress.xml (JUnit; stress-quick.*
#    for --quick), and a last line PASS or FAIL: <reason>. Exit 0 only on PASS.
#
# Every process it starts is stopped by its PID, also on error or Ctrl-C.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

quick=0
plot=${PLOT:+1}
plot=${plot:-0}
server=
client=
guard=
only=all     # all | attacks | sweep
sweep=
usage() { sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --plot) plot=1 ;;
    --attacks-only) only=attacks ;;
    --sndbuf-sweep) only=sweep; sweep=${2:?}; shift ;;
    --server) server=${2:?}; shift ;;
    --client) client=${2:?}; shift ;;
    --guard) guard=${2:?}; shift ;;
    *) usage ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    server=${server:-build/asan/evl-testsrv}
    client=${client:-build/asan/evl-stress}
else
    server=${server:-build/evl-testsrv}
    client=${client:-build/evl-stress}
fi
guard=${guard:-build/nbguard.so}
for f in "$server" "$client" "$guard"; do
    [ -e "$f" ] || { echo "run.sh: $f not found (make builds it)" >&2; exit 2; }
done
guard=$(realpath "$guard")

reports=build/reports
name=stress
[ "$quick" = 1 ] && name=stress-quick
[ "$only" = attacks ] && name=stress-attacks
[ "$only" = sweep ] && name=stress-sndbuf
if [ "$quick" = 1 ] && [ "$only" != all ]; then
    echo "run.sh: the attacks run only in the full stress (not with --quick)" >&2
    exit 2
fi
work=$reports/$name
rm -rf "$work"
mkdir -p "$work"
rows=$work/rows.tsv
csv=$work/latency.csv
json=$reports/$name.json

# The numbers. Full: hundreds of slow readers with tens of MiB each, far
# beyond kernel buffers; 60-90 s on 2 cores. Quick: the same shape, small,
# for the sanitized build in make check.
SNDBUF=65536
if [ "$quick" = 1 ]; then
    SLOW=(--conns 80 --bytes 4M --seconds 8 --stall-ms 4000 --rate 128K)
    FAN=(--conns 150 --seconds 4 --rate 200)
    CHURN=(--conns 32 --seconds 4 --rate 150 --bytes 2M)
    FAULT=(--conns 12 --bytes 4M --seconds 3 --stall-ms 1000 --rate 512K)
    LIMITS=(--max-ms 1500)
    # Per scenario, ~3x the probe p99 and ~1.5x the server's peak RSS
    # measured in 4 quick runs on this 2-core machine at load ~5 (ASan server:
    # its RSS is mostly ASan's own; the fault rounds run a fresh server):
    #   slowreaders p99 70-117 ms, RSS 262-269 MiB; fanout p99 3.3-7.6 ms,
    #   RSS 252-264 MiB; churn p99 3.6-8.7 ms, RSS 278-283 MiB;
    #   fault:fiu-send p99 8.7-13.6 ms, RSS 63-67 MiB; fault:eintr p99
    #   10.5-18.4 ms, RSS 50-55 MiB.
    LIM_SLOW=(--max-p99-ms 350 --max-rss-mb 400)
    LIM_MAIN=(--max-p99-ms 40 --max-rss-mb 400)
    LIM_FAULT=(--max-p99-ms 60 --max-rss-mb 128)
else
    SLOW=(--conns 300 --bytes 24M --seconds 30 --stall-ms 12000 --rate 256K)
    FAN=(--conns 400 --seconds 15 --rate 200)
    CHURN=(--conns 64 --seconds 15 --rate 400 --bytes 8M)
    FAULT=(--conns 24 --bytes 16M --seconds 4 --stall-ms 1500 --rate 1M)
    LIMITS=(--max-ms 2000)
    # Release server. slowreaders: issue 14's goal, p99 <= 10 ms and max
    # <= 50 ms (it was 139 ms before the write budget). The others, from the
    # run in stress/README.md: fanout p99 3.7 ms, RSS 75 MiB; churn p99
    # 0.8 ms, RSS 3.3 MiB; fault rounds p99 6.9-7.6 ms, RSS 5.3-5.6 MiB.
    # Bounds ~3x p99, ~2x RSS.
    LIM_SLOW=(--max-p99-ms 10 --max-ms 50 --max-rss-mb 160)
    LIM_MAIN=(--max-p99-ms 40 --max-rss-mb 160)
    LIM_FAULT=(--max-p99-ms 40 --max-rss-mb 24)
fi
# Why these limits: a write that blocked on a stalled reader would stop the
# loop until that reader wakes, --stall-ms later; --max-ms (the one single-
# sample bound, kept because it is the signature of a blocked loop, not a
# latency target) is well below it.
# p99 (corrected for coordinated omission) leaves room for a 2-core machine
# shared with other work, and for the burst when hundreds of stalled readers
# wake at once: then one loop iteration serves every one of them (see
# stress/README.md, "What the numbers say").

# ASan's link-order check would refuse the preloaded guard with a gcc
# (shared) runtime; clang's static one does not care. Leaks stay on here.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}:verify_asan_link_order=0"

fails=()   # failures found outside the rows (server exits, guard, tools)
notes=()   # facts printed under the table
live=()    # PIDs started and not yet reaped
cleanup() {
    local p
    for p in "${live[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    for p in "${live[@]}"; do
        wait "$p" 2>/dev/null # reap our children; a traced server is strace's
    done
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# The server on cpu 0, the load (evl-stress, and the slowhttptest it starts)
# on cpu 1, as bench/run.sh and the issue's measurements do: on 2 cores the
# client, checking every byte at full speed, would otherwise take the
# server's core, and the probe would time the scheduler, not the loop
# (stress-scale's probe p99: 135 ms unpinned, 0.5 ms with the server given
# priority over the client).
PIN_SRV=() PIN_CLI=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SRV=(taskset -c 0) PIN_CLI=(taskset -c 1)
fi

srv_pid= wrap_pid= port=
# start_server NAME TRACED COMMAND...: COMMAND runs the server (prefixed by
# whatever wraps it) and gets "--port 0 --sndbuf N" appended. TRACED=1 when
# COMMAND is a tracer whose child is the server (strace), 0 when COMMAND
# ends by exec'ing it (env, fiu-run): then the PID is the server's.
start_server() {
    local name=$1 traced=$2
    shift 2
    port=
    srv_pid=
    "${PIN_SRV[@]}" "$@" --port 0 --sndbuf "$SNDBUF" >"$work/$name.out" 2>"$work/$name.err" &
    wrap_pid=$!
    live+=("$wrap_pid")
    local i
    for ((i = 0; i < 300; i++)); do
        port=$(awk '/^LISTENING [0-9]+$/ {print $2; exit}' "$work/$name.out")
        [ -n "$port" ] && break
        kill -0 "$wrap_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        fails+=("$name: the server printed no LISTENING line within 15 s: $(head -c 300 "$work/$name.err" | tr '\n' ' ')")
        stop_pid "$wrap_pid"
        return 1
    fi
    srv_pid=$wrap_pid
    if [ "$traced" = 1 ]; then
        srv_pid=$(cat /proc/"$wrap_pid"/task/*/children 2>/dev/null | awk '{print $1; exit}')
        [ -n "$srv_pid" ] || { fails+=("$name: cannot find the traced server's PID"); stop_pid "$wrap_pid"; return 1; }
        live+=("$srv_pid") # a tracer killed hard may leave its tracee running
    fi
    return 0
}

# Exited (a zombie waiting for us) or gone.
exited() {
    local st
    st=$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null) || return 0
    [ -z "$st" ] || [ "$st" = Z ]
}

# Kill hard and reap: for a server that failed to start or to stop.
stop_pid() {
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    forget "$1"
}

forget() {
    local p keep=()
    for p in "${live[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    live=("${keep[@]}")
}

# guard_loaded NAME: the guard must be mapped in the running server. ld.so only
# warns ("cannot be preloaded: ignored") when LD_PRELOAD names a library it
# cannot load, and a wrapper (fiu-run, sh, strace -E) may drop the variable:
# without this check such a round would pass with no guard at all.
guard_loaded() {
    if ! grep -qF "$guard" /proc/"$srv_pid"/maps 2>/dev/null; then
        fails+=("$1: nbguard.so is not loaded in the server (pid $srv_pid; see $work/$1.err)")
    fi
}

# guard_field FILE KEY: a number from the guard's report line (empty if none).
guard_field() {
    tr ' ' '\n' <"$1" 2>/dev/null | sed -n "s/^$2=\([0-9]*\)$/\1/p"
}

# stop_server NAME: SIGTERM to the server; it must exit 0 within 15 s (it
# flushes for at most its close timeout, 5 s by default), without a guard
# or sanitizer report.
stop_server() {
    local name=$1 i rc
    kill -TERM "$srv_pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        exited "$wrap_pid" && break
        sleep 0.1
    done
    if ! exited "$wrap_pid"; then
        fails+=("$name: the server did not exit within 15 s of SIGTERM")
        kill -KILL "$srv_pid" 2>/dev/null
        forget "$srv_pid"
        stop_pid "$wrap_pid"
        return
    fi
    wait "$wrap_pid" 2>/dev/null # bash's "Aborted" notice: the checks below say it
    rc=$?
    forget "$wrap_pid"
    forget "$srv_pid"
    local err=$work/$name.err
    if grep -q '^nbguard:' "$err"; then
        fails+=("$name: $(grep -m1 '^nbguard:' "$err") (see $err)")
    elif grep -Eq 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$err"; then
        fails+=("$name: sanitizer report: $(grep -Em1 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$err") (see $err)")
    elif [ "$rc" -ne 0 ]; then
        fails+=("$name: the server exited $rc after SIGTERM, want 0 (see $err)")
    fi
}

stress() { # scenario, then its evl-stress arguments (which may override LIMITS)
    client_run "$1" "${LIMITS[@]}" "${@:2}" --connect "127.0.0.1:$port" --server-pid "$srv_pid" \
        --rows "$rows"
}

client_run() { # evl-stress arguments...
    # in the background and waited for: a signal to this script then runs
    # its trap at once (bash defers traps until a foreground child ends)
    "${PIN_CLI[@]}" "$client" "$@" >>"$work/client.out" &
    local cpid=$!
    live+=("$cpid")
    wait "$cpid"
    local rc=$?
    forget "$cpid"
    # 0 pass, 1 fail (its row says why); anything else is the client itself
    # (its stderr, shown as it runs, says why)
    [ "$rc" -le 1 ] || fails+=("evl-stress $1 exited $rc")
}

echo "stress: server $server, client $client, guard $guard; logs in $work/"

# --- the main round: one server, three scenarios, under the guard ----------
if [ "$only" = all ]; then
if start_server main 0 env LD_PRELOAD="$guard" NBGUARD_REPORT="$work/guard-main.txt" "$server"; then
    guard_loaded main
    for sc in slowreaders fanout churn; do
        case $sc in
        slowreaders) args=("${SLOW[@]}" "${LIM_SLOW[@]}") ;;
        fanout) args=("${FAN[@]}" "${LIM_MAIN[@]}") ;;
        churn) args=("${CHURN[@]}" "${LIM_MAIN[@]}") ;;
        esac
        echo "stress: $sc ${args[*]}"
        stress "$sc" "${args[@]}" --guard-report "$work/guard-main.txt" --latency-csv "$csv"
    done
    stop_server main
fi

# --- fault round 1: libfiu, send/sendmsg fail with EAGAIN 30% of the time --
# fiu-run replaces LD_PRELOAD with its own libraries; the guard goes in front
# of them (through sh), so that it sees, times and counts the injected EAGAINs
# too. -f "" turns off fiu's control FIFOs in /tmp.
fiu_cmds=(-c 'enable_random name=posix/io/net/send,probability=0.3,failinfo=11'
          -c 'enable_random name=posix/io/net/sendmsg,probability=0.3,failinfo=11')
if ! command -v fiu-run >/dev/null; then
    fails+=("fault:fiu-send: fiu-run not installed (package fiu-utils)")
elif start_server fiu 0 fiu-run -x -f "" "${fiu_cmds[@]}" \
        sh -c 'LD_PRELOAD="$0 $LD_PRELOAD" exec "$@"' "$guard" \
        env NBGUARD_REPORT="$work/guard-fiu.txt" ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$server"; then
    guard_loaded fiu
    echo "stress: fault:fiu-send slowreaders ${FAULT[*]}"
    stress slowreaders "${FAULT[@]}" "${LIM_FAULT[@]}" --label fault:fiu-send --guard-report "$work/guard-fiu.txt"
    stop_server fiu
    notes+=("fault:fiu-send: fiu-run -x ${fiu_cmds[*]}")
fi

# --- fault round 2: strace injects EINTR into epoll_wait (3rd call, then every 5th)
# --seccomp-bpf stops the server only on the traced calls, so the load is not
# slowed by a ptrace stop per send. LeakSanitizer cannot run under ptrace.
inject=epoll_wait,epoll_pwait
if ! command -v strace >/dev/null; then
    fails+=("fault:eintr: strace not installed")
elif start_server eintr 1 strace -f --seccomp-bpf -o "$work/strace.log" -e trace="$inject" \
        -e inject="$inject":error=EINTR:when=3+5 \
        -E LD_PRELOAD="$guard" -E NBGUARD_REPORT="$work/guard-eintr.txt" \
        -E ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$server"; then
    guard_loaded eintr
    echo "stress: fault:eintr slowreaders ${FAULT[*]}"
    stress slowreaders "${FAULT[@]}" "${LIM_FAULT[@]}" --label fault:eintr --guard-report "$work/guard-eintr.txt"
    stop_server eintr
    injected=$(grep -c 'INJECTED' "$work/strace.log" 2>/dev/null)
    total=$(grep -Ec '^[0-9]+ +epoll_(p)?wait\(' "$work/strace.log" 2>/dev/null)
    if [ "${injected:-0}" -gt 0 ]; then
        notes+=("fault:eintr: strace injected EINTR into $injected of $total epoll_wait calls; the loop went on")
    else
        fails+=("fault:eintr: strace injected no EINTR (see $work/strace.log)")
    fi
fi

# --- the proxy round: slow readers through evl-testsrv --mode proxy ----------
# Backpressure across two sockets: each slow reader's BLAST comes from an
# upstream server (no guard: it is not the one under test) through the
# proxy, which runs under the guard and whose RSS the client samples. The
# proxy must never block, must hold at most about wbuf_high per direction
# per pair, and every byte must still arrive in order.
up_port=
"$server" --port 0 >"$work/upstream.out" 2>"$work/upstream.err" &
up_pid=$!
live+=("$up_pid")
for ((i = 0; i < 300; i++)); do
    up_port=$(awk '/^LISTENING [0-9]+$/ {print $2; exit}' "$work/upstream.out")
    [ -n "$up_port" ] && break
    kill -0 "$up_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$up_port" ]; then
    fails+=("proxy: the upstream server did not listen (see $work/upstream.err)")
elif start_server proxy 0 env LD_PRELOAD="$guard" NBGUARD_REPORT="$work/guard-proxy.txt" \
        "$server" --mode proxy --upstream "127.0.0.1:$up_port"; then
    echo "stress: proxy slowreaders ${FAULT[*]}"
    stress slowreaders "${FAULT[@]}" --label proxy:slowreaders --guard-report "$work/guard-proxy.txt"
    stop_server proxy
fi
if [ -n "$up_pid" ]; then
    kill -TERM "$up_pid" 2>/dev/null
    wait "$up_pid" 2>/dev/null || fails+=("proxy: the upstream server exited $? after SIGTERM (see $work/upstream.err)")
    forget "$up_pid"
fi

# Evidence that fiu reached the server's sends: the same load with and without
# fiu, and the share of guarded calls that returned EAGAIN (natural + injected).
eagain_share() { # guard report -> "N of M (P%)"
    awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }}
         END { if (v["calls"] > 0) printf "%d of %d (%.0f%%)", v["eagain"], v["calls"], 100 * v["eagain"] / v["calls"] }' "$1" 2>/dev/null
}
if [ -s "$work/guard-fiu.txt" ] && [ -s "$work/guard-eintr.txt" ]; then
    notes+=("fault:fiu-send: sends that returned EAGAIN: $(eagain_share "$work/guard-fiu.txt") under fiu, $(eagain_share "$work/guard-eintr.txt") in fault:eintr (same load, no fiu)")
fi

# Proof that fiu injected: EAGAINs after which the socket was writable at once
# (the guard's eagain_writable; the kernel says EAGAIN only on a full buffer).
# The EINTR round is the control: the same load without fiu.
# Measured (stress-quick): see stress/README.md.
if [ -s "$work/guard-fiu.txt" ]; then
    inj=$(guard_field "$work/guard-fiu.txt" eagain_writable)
    ctl=$(guard_field "$work/guard-eintr.txt" eagain_writable)
    if [ -z "$inj" ] || [ "$inj" -lt 10 ] || [ "$inj" -le $((5 * ${ctl:-0})) ]; then
        fails+=("fault:fiu-send: fiu injected no EAGAIN that the guard could see: ${inj:-?} EAGAINs on writable sockets under fiu, ${ctl:-?} without (want >= 10 and > 5x)")
    else
        notes+=("fault:fiu-send: EAGAINs on writable sockets (injected): $inj under fiu, ${ctl:-?} in fault:eintr without fiu")
    fi
fi

# Every server that ran under the guard wrote its report at exit, and every
# scenario this script ran has a result row: a client that died (its watchdog
# _exit()s) leaves no row, and a missing row is a failure, not a shorter table.
for g in main fiu eintr; do
    [ -s "$work/guard-$g.txt" ] || fails+=("$g: the guard wrote no report (not loaded, or the server died)")
done
for sc in slowreaders fanout churn fault:fiu-send fault:eintr; do
    if ! cut -f1 "$rows" 2>/dev/null | grep -qxF "$sc"; then
        fails+=("$sc: no result row (the client died without writing one: see $work/client.out)")
    fi
done
fi # only = all

# --- the attacks: slowhttptest against --mode http ---------------------------
# Issue 14's figures, the same for every attack: the probe (GET / every 20 ms
# on one keep-alive connection) p99 <= 10 ms and max <= 50 ms; 5 s after the
# last attacker left the server's RSS within 2x of its RSS before the attack;
# peak RSS within RSS before + peak connections x ATTACK_CONN_KB, where
# ATTACK_CONN_KB is what the watermarks let the test server hold per
# connection: wbuf_low (64 KiB: /bytes streams while pending <= wbuf_low)
# + one body chunk (BLAST_CHUNK, 64 KiB) + a read buffer (an unfinished
# request head, at most HTTP_HEAD_MAX 8 KiB, in a buffer at most twice that:
# 16 KiB) + 4 KiB of connection state and allocator slack = 148 KiB. Each
# attack runs on a fresh server, which must then exit 0 on SIGTERM.
# slowhttptest exits 0 whatever happens: evl-stress reads its CSV.
ATTACK_CONN_KB=148
ATTACK_LIMITS=(--probe-ms 20 --max-p99-ms 10 --max-ms 50 --rss-per-conn-kb "$ATTACK_CONN_KB"
               --after-ms 5000 --rss-ratio 2)
# The slow read of the issue (2000 connections at 400/s, GET /bytes/8388608,
# a 512-1024-byte window, 32 bytes read every 3 s), held 15 s instead of
# the issue's longer run: the ramp takes 5 s, then 10 s at 2000.
SLOWREAD=(-X -c 2000 -r 400 -l 15 -w 512 -y 1024 -n 3 -z 32 -k 1 -p 3)
SLOWREAD_PATH=/bytes/8388608
# Slowloris: 1000 connections at 200/s, each sending one more header line
# every 5 s, for 12 s (the head never completes; HTTP_HEAD_MAX and 64
# headers would end each only after minutes).
SLOWLORIS=(-H -c 1000 -r 200 -l 12 -i 5 -x 24 -p 3)
# Slow body: 1000 connections at 200/s, POST with Content-Length 8192 sent
# 24 bytes every 5 s, for 12 s. The test server serves GET only, so it
# answers each head with 405 and closes: the row shows what that costs.
SLOWBODY=(-B -c 1000 -r 200 -l 12 -i 5 -x 24 -s 8192 -p 3)

# attack_round NAME SNDBUF PATH SECONDS SLOWHTTPTEST-ARGS...
attack_round() {
    local an=$1 sb=$2 path=$3 secs=$4
    local tag=${an// /_} # a label may hold blanks; file names do not
    shift 4
    local saved=$SNDBUF
    SNDBUF=$sb
    if start_server "atk-$tag" 0 env LD_PRELOAD="$guard" NBGUARD_REPORT="$work/guard-atk-$tag.txt" \
            "$server" --mode http; then
        guard_loaded "atk-$tag"
        echo "stress: $an (sndbuf $sb): slowhttptest $* -u http://127.0.0.1:$port$path"
        client_run attack --connect "127.0.0.1:$port" --server-pid "$srv_pid" --rows "$rows" \
            --seconds "$secs" "${ATTACK_LIMITS[@]}" --label "$an" \
            --guard-report "$work/guard-atk-$tag.txt" --attack-csv "$work/atk-$tag.csv" \
            --attack-log "$work/atk-$tag.log" --samples-csv "$work/attack-samples.csv" \
            -- slowhttptest "$@" -u "http://127.0.0.1:$port$path" -g -o "$work/atk-$tag"
        stop_server "atk-$tag"
    fi
    SNDBUF=$saved
}

attack_names=()
if [ "$quick" = 0 ]; then # --attacks-only and --sndbuf-sweep imply it
    if ! command -v slowhttptest >/dev/null; then
        fails+=("attacks: slowhttptest not installed (package slowhttptest)")
    elif [ "$only" = sweep ]; then
        for sb in $sweep; do
            label="slowread sndbuf=$sb"
            [ "$sb" = 0 ] && label="slowread sndbuf=kernel"
            attack_round "$label" "$sb" "$SLOWREAD_PATH" 15 "${SLOWREAD[@]}"
            attack_names+=("$label")
        done
        read -r m0 m1 m2 </proc/sys/net/ipv4/tcp_mem
        notes+=("tcp_mem (pages): $m0 $m1 $m2; default SO_SNDBUF: net.ipv4.tcp_wmem $(tr '\t' ' ' </proc/sys/net/ipv4/tcp_wmem)")
    else
        attack_round slowread "$SNDBUF" "$SLOWREAD_PATH" 15 "${SLOWREAD[@]}"
        attack_round slowloris "$SNDBUF" / 12 "${SLOWLORIS[@]}"
        attack_round slowbody "$SNDBUF" / 12 "${SLOWBODY[@]}"
        attack_names+=(slowread slowloris slowbody)
    fi
fi
for an in "${attack_names[@]}"; do
    [ -s "$work/guard-atk-${an// /_}.txt" ] || fails+=("atk-$an: the guard wrote no report (not loaded, or the server died)")
    cut -f1 "$rows" 2>/dev/null | grep -qxF "$an" ||
        fails+=("$an: no result row (the client died without writing one: see $work/client.out)")
done

# --- the latency chart -----------------------------------------------------
if [ "$plot" = 1 ]; then
    png=$reports/$name-latency.png
    STALL_S=$(awk '{for (i = 1; i < NF; i++) if ($i == "--stall-ms") print $(i + 1) / 1000}' <<<"${SLOW[*]}")
    if ! command -v gnuplot >/dev/null; then
        fails+=("--plot: gnuplot not installed")
    elif [ -s "$csv" ]; then
        gnuplot <<EOF 2>"$work/gnuplot.err" || fails+=("--plot: gnuplot failed: $(head -c 200 "$work/gnuplot.err")")
set terminal pngcairo size 1200,600
set output "$png"
set datafile separator ","
set title "probe PING round trip during the stress scenarios ($(basename "$server"))"
set xlabel "seconds since the scenario started"
set ylabel "round trip (ms)"
set logscale y
set grid
set arrow from $STALL_S, graph 0 to $STALL_S, graph 1 nohead dashtype 2 lc rgb "#d62728"
set label "slowreaders: stalled readers wake" at $STALL_S, graph 0.97 offset 0.5,0 tc rgb "#d62728"
set key top right
names = "slowreaders fanout churn"
colors = "#d62728 #1f77b4 #2ca02c"
plot for [i=1:3] "$csv" using (strcol(1) eq word(names, i) ? \$2 : 1/0):3 \
     with points pt 7 ps 0.4 lc rgb word(colors, i) title word(names, i)
EOF
        [ -s "$png" ] && notes+=("latency chart: $png")
    fi
fi

# --- one table, one verdict ------------------------------------------------
args=(report --rows "$rows" --json "$json" --junit "$reports/$name.xml")
for n in "${notes[@]}"; do args+=(--note "$n"); done
for f in "${fails[@]}"; do args+=(--fail "$f"); done
"${PIN_CLI[@]}" "$client" "${args[@]}"
