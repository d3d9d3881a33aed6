#!/usr/bin/env bash
# Installs the Debian packages that the make targets need, and nothing else.
# Usage: tools/deps.sh [group...]
#   groups: build unit conformance stress fuzz lint coverage headers bench install
#         abi, fresh (make fresh-check), and
#   gate  every package any stage of ci/gate.sh (make check) needs: installed
#         once, before the first stage, so a fresh machine passes first time
#         (the build stage compiles every C file: lib/test needs cmocka.h,
#         bench/peers needs uv.h, event.h, ev.h)
#   all   every group
# Called by make before each target; a no-op when everything is present.
# Not root: prints the exact apt-get line and exits 1 (make stops).
set -euo pipefail

declare -A GROUP=(
  [build]="make gcc clang zlib1g-dev libclang-rt-14-dev"
  [unit]="libcmocka-dev valgrind"
  [conformance]="socat python3-pytest procps util-linux iproute2 strace fiu-utils redis-tools wrk"
  [stress]="socat fiu-utils strace gnuplot slowhttptest"
  [fuzz]="afl++ zip"
  [lint]="cppcheck clang-tidy"
  [coverage]="gcovr"
  [headers]="libcmocka-dev libuv1-dev libevent-dev libev-dev"
  [fresh]="mmdebstrap git"
  [install]="pkg-config binutils python3"
  [abi]="abigail-tools"
  [bench]="libuv1-dev libevent-dev libev-dev redis-server redis-tools nginx-light wrk valgrind gnuplot slowhttptest"
)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(build)
case "${groups[0]}" in
  all) groups=("${!GROUP[@]}") ;;
  gate) groups=(build headers unit conformance stress fuzz lint install abi coverage) ;;
esac

want=()
for g in "${groups[@]}"; do
  [ -n "${GROUP[$g]+x}" ] || { echo "deps.sh: unknown group '$g'" >&2; exit 2; }
  for p in ${GROUP[$g]}; do want+=("$p"); done
done

missing=()
for p in $(printf '%s\n' "${want[@]}" | sort -u); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages; run as root:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have stale or empty lists: update once, then install.
apt-get update -qq >/dev/null
$line >/dev/null
