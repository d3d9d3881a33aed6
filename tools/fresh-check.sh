#!/usr/bin/env bash
# make fresh-check: the README's two commands on a fresh Debian 12 machine.
#
#   tools/fresh-check.sh [--keep] [--timeout SECS]
#
# Builds a minimal Debian 12 root with mmdebstrap (bookworm, minbase, plus make
# and ca-certificates: nothing else), clones this repository's committed HEAD
# into /root/evloop inside it (uncommitted changes are not tested: commit
# first), and runs, as root inside it, `make stress` and then `make check`:
# each must install what it needs itself. Passes only if both pass.
#
#   --keep          leave the root (under /var/tmp) for a look afterwards
#   --timeout SECS  limit for each of the two commands (default 2400)
#
# What the root offers is what a real Debian 12 install offers, no more:
#   /proc, /sys, /dev (devtmpfs, with its own /dev/pts and /dev/shm);
#   /etc/hosts as the Debian installer writes it (localhost is 127.0.0.1 and
#   ::1), /etc/resolv.conf copied from this host;
#   the host's network namespace: apt must reach the Debian mirror, and the
#   tests use only loopback (127.0.0.1, ::1) and port 0 or unix sockets, so
#   they do not collide with anything else on the host.
# A test may assume those and nothing else (no DNS name other than localhost,
# no package the make target did not install through tools/deps.sh).
#
# Every mount is undone and every process left in the root is killed (by PID)
# on every way out. Logs: build/reports/fresh-check/ (mmdebstrap.log,
# make-stress.log, make-check.log, and the gate's reports from inside).
# Exit: 0 both passed, 1 a command failed, 2 usage, 3 setup failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 3
repo=$PWD

usage() { sed -n '4,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
keep=0 limit=2400
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --timeout)
      if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then usage; fi
      limit=$2; shift ;;
    -h|--help) usage ;;
    *) echo "fresh-check: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: must run as root (chroot, mount)" >&2; exit 3; }
tools/deps.sh fresh || exit 3

logs=$repo/build/reports/fresh-check
rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d /var/tmp/evloop-fresh.XXXXXX) || exit 3
root=$work/root
mounted=()        # mount points in the order they were mounted
cmd_pid=          # the running command's timeout process

say() { printf 'fresh-check: %s\n' "$*"; }

# Every process whose root directory is inside the fresh root: found by its
# /proc/<pid>/root link, killed by PID (TERM, then KILL after 5 s).
root_pids() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case "$r" in "$root"|"$root"/*) echo "${p#/proc/}" ;; esac
  done
}
kill_root_procs() {
  local pids i
  pids=$(root_pids)
  [ -n "$pids" ] || return 0
  say "stopping processes left in the root: $(echo "$pids" | tr '\n' ' ')"
  # shellcheck disable=SC2086  # a list of PIDs
  kill -TERM $pids 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(root_pids)
    [ -n "$pids" ] || return 0
    sleep 0.5
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null
  sleep 0.5
}

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local i m
  trap - EXIT INT TERM HUP
  [ -n "$cmd_pid" ] && kill -TERM "$cmd_pid" 2>/dev/null
  kill_root_procs
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m=${mounted[$i]}
    umount "$m" 2>/dev/null || umount -l "$m" || say "could not unmount $m"
  done
  # Nothing of ours may stay mounted, whatever happened above.
  if grep -qF " $root/" /proc/mounts; then
    say "mounts left under $root:"; grep -F " $root/" /proc/mounts
  elif [ "$keep" -eq 1 ]; then
    say "root kept: $root"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'say "interrupted (SIGINT)"; exit 130' INT
trap 'say "interrupted (SIGTERM)"; exit 143' TERM
trap 'say "interrupted (SIGHUP)"; exit 129' HUP

mnt() {  # mnt TYPE DIR [OPTIONS]: mount a fresh instance of TYPE at root/DIR
  mkdir -p "$root/$2"
  mount -t "$1" ${3:+-o "$3"} "$1" "$root/$2" || { say "mount $1 on /$2 failed"; exit 3; }
  mounted+=("$root/$2")
}

secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }
results=()

# 1. The root: Debian's packages only (mmdebstrap adds bookworm-updates and
#    the security archive for a stable release). This host's apt settings
#    (a snapshot mirror may need Check-Valid-Until off) are not copied in.
head=$(git rev-parse HEAD) || exit 3
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
  say "note: uncommitted changes are not tested (HEAD $head is)"
say "building a Debian 12 minbase root in $root"
t0=$(date +%s.%N)
if ! mmdebstrap --variant=minbase --include=make,ca-certificates \
     bookworm "$root" >"$logs/mmdebstrap.log" 2>&1; then
  say "mmdebstrap failed; last lines of $logs/mmdebstrap.log:"
  tail -n 20 "$logs/mmdebstrap.log" | sed 's/^/   | /'
  exit 3
fi
results+=("$(printf '%-32s %6ss  PASS' 'mmdebstrap (minbase+make)' "$(secs "$t0")")")

# 2. A real machine's /etc/hosts (what debian-installer's netcfg writes) and
#    name servers; the mounts.
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	evloop-fresh

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
EOF
echo evloop-fresh >"$root/etc/hostname"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
mnt proc proc
mnt sysfs sys
mnt devtmpfs dev
mnt devpts dev/pts newinstance,ptmxmode=0666,mode=0620
mnt tmpfs dev/shm mode=1777

# 3. A clean clone of the committed HEAD (the clone gets every branch; the
#    worktree's HEAD may not be the repository's default branch).
dst=$root/root/evloop
if ! { git clone -q --no-checkout "$repo" "$dst" && git -C "$dst" checkout -q --detach "$head"; } \
     >"$logs/clone.log" 2>&1; then
  say "git clone failed:"; cat "$logs/clone.log"; exit 3
fi
say "clone of $head in /root/evloop"

# 4. The README's two commands, as root, with a login-like environment.
#    setsid: the command is a session leader, so timeout's signal and the
#    sweep above reach what it started.
failed=0
run() {
  local name=$1 cmd=$2 log=$logs/$3 rc t
  say "running '$cmd' (limit ${limit} s, log $log)"
  t=$(date +%s.%N)
  # In the background, so that a signal to this script is handled at once
  # (bash runs traps only between foreground commands).
  timeout --kill-after=30 "$limit" setsid chroot "$root" /usr/bin/env -i \
    HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -lc "cd /root/evloop && $cmd" >"$log" 2>&1 </dev/null &
  cmd_pid=$!
  wait "$cmd_pid"
  rc=$?
  cmd_pid=
  kill_root_procs
  local res=PASS
  [ $rc -eq 0 ] || { res=FAIL; failed=$((failed + 1)); }
  [ $rc -eq 124 ] && res="FAIL (timeout ${limit} s)"
  results+=("$(printf '%-32s %6ss  %s' "$name" "$(secs "$t")" "$res")")
  if [ $rc -ne 0 ]; then
    say "'$cmd' failed (exit $rc); last lines:"
    tail -n 30 "$log" | sed 's/^/   | /'
  fi
}
run "make stress" "make stress" make-stress.log
run "make check" "make check" make-check.log
cp -r "$dst/build/reports" "$logs/gate-reports" 2>/dev/null

echo
say "transcript (Debian 12 minbase root, HEAD $head)"
printf '  %s\n' "${results[@]}"
if [ $failed -eq 0 ]; then say PASS; exit 0; fi
say "FAIL: $failed of 2 commands failed (logs in $logs)"
exit 1
