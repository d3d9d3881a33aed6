#!/usr/bin/env bash
# stress/guard_test.sh: proves nbguard.so has teeth (make guard-test).
#   usage: stress/guard_test.sh NBGUARD_SO GUARD_PROG [ASAN_GUARD_PROG]
# 1. Without the guard, a one-byte write to a blocking socketpair goes through
#    (so an abort below is the guard's doing, not the kernel's).
# 2. Under the guard, each of write, writev, send, sendmsg, sendto on a
#    blocking socket, and write on a blocking pipe, dies by SIGABRT with the
#    guard's message naming the call.
# 3. Under the guard, a program that only writes to non-blocking sockets and
#    pipes (and a regular file, and stdout) exits 0 and leaves a report with
#    its guarded calls counted.
# 4. The same under ASan: the sanitizer's own interceptors of send & co must
#    still reach the guard (make stress-quick preloads it into the ASan server).
set -uo pipefail

guard=$(realpath "${1:?nbguard.so}")
prog=${2:?guard-prog}
asan_prog=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
pass() { printf '  %-58s ok\n' "$1"; }
fail() { printf '  %-58s FAIL: %s\n' "$1" "$2"; fails=$((fails + 1)); }

echo "guard-test: $guard"

if "$prog" block send >"$work/out" 2>"$work/err"; then
    pass "no guard: blocking send goes through (exit 0)"
else
    fail "no guard: blocking send goes through (exit 0)" "exit $?: $(head -c 200 "$work/err")"
fi

check_abort() { # label prog call
    local label=$1 p=$2 call=$3 rc
    # the braces catch bash's own "Aborted" notice: the abort is expected
    { LD_PRELOAD=$guard "$p" block "$call" >"$work/out" 2>"$work/err"; } 2>/dev/null
    rc=$?
    if [ "$rc" -ne 134 ]; then
        fail "$label" "exit $rc, want 134 (SIGABRT)"
    elif ! grep -q "nbguard: blocking ${call/pipe/write}() on fd [0-9]* (" "$work/err"; then
        fail "$label" "no guard message: $(head -c 200 "$work/err")"
    elif ! grep -q 'backtrace:' "$work/err"; then
        fail "$label" "no backtrace"
    else
        pass "$label"
    fi
}

for call in write writev send sendmsg sendto pipe; do
    check_abort "guard: blocking $call is aborted with its name" "$prog" "$call"
done

check_clean() { # label prog
    local label=$1 p=$2 rc
    rm -f "$work/report"
    NBGUARD_REPORT=$work/report LD_PRELOAD=$guard "$p" clean >"$work/out" 2>"$work/err"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$label" "exit $rc: $(head -c 200 "$work/err")"
    elif ! grep -Eq '^max_write_us=[0-9]+ calls=[0-9]+ eagain=[1-9][0-9]* slowest=[a-z]+ eagain_writable=[0-9]+$' "$work/report" 2>/dev/null; then
        fail "$label" "report missing or malformed: $(cat "$work/report" 2>/dev/null)"
    elif [ "$(sed -E 's/.* calls=([0-9]+).*/\1/' "$work/report")" -lt 6 ]; then
        fail "$label" "too few guarded calls counted: $(cat "$work/report")"
    else
        pass "$label ($(cat "$work/report"))"
    fi
}

check_clean "guard: non-blocking writes run clean" "$prog"

if [ -n "$asan_prog" ]; then
    # ASan's interceptors call the next definition of send & co, which is the
    # guard's: the preload order puts it before libc.
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
        check_abort "guard+ASan: blocking sendmsg is aborted" "$asan_prog" sendmsg
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
        check_clean "guard+ASan: non-blocking writes run clean" "$asan_prog"
fi

if [ "$fails" -ne 0 ]; then
    echo "FAIL: guard-test: $fails check(s) failed"
    exit 1
fi
echo PASS
