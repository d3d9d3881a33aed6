#!/usr/bin/env bash
# Proves that each invariant torture checks can fail: builds the torture
# driver against a mutated copy of lib/ (LIB=), runs the scenario and call
# kind the mutant hides in, and expects the named violation in the report.
#
#   tools/faultinj/teeth.sh            every mutant; exit 1 if one is not caught
#
# Each mutant is one sed expression on one file of lib/, and must apply.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
[ $# -eq 0 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

work=$(mktemp -d /tmp/evl-teeth.XXXXXX)
trap 'rm -rf "$work"' EXIT

# name ~ file ~ sed expression ~ torture arguments ~ expected in the report
MUTANTS=(
  "leak~loop.c~/evl__io \*io = calloc(1, sizeof \*io);/,/return io;/ s/        free(io);/        (void)0;/~--scenario add_fd --kind epoll_ctl~VIOLATION memory leak"
  "fd leak~loop.c~s/            close(l->epfd);/            (void)0;/~--scenario adopt --kind calloc~VIOLATION fd leak"
  "errno~loop.c~s/int err = l->epfd < 0 ? errno : ENOMEM;/int err = ENOMEM;/~--scenario adopt --kind epoll_create1~VIOLATION wrong errno"
  "on_close~conn.c~s/if (l->h.on_close)/if (l->h.on_close \&\& !c->broken)/~--scenario writev --kind read~VIOLATION on_close not exactly once"
  "spin~loop.c~s/if (!evl__list_empty(\&l->ready) || l->kill_head ||/if (!evl__list_empty(\&l->ready) || l->kill_head || l->nlisteners ||/~--scenario accept_echo --kind listen~VIOLATION spin"
  "stall~loop.c~s/        return -1; \/\* ENOMEM, ENOSPC/        return 0; \/* ENOMEM, ENOSPC/~--scenario backpressure --kind epoll_ctl~VIOLATION stalled connection"
)

missed=0
for m in "${MUTANTS[@]}"; do
  IFS='~' read -r name file expr args expect <<<"$m"
  rm -rf "${work:?}/lib" "${work:?}/build"
  cp -r lib "$work/lib"
  sed -i "$expr" "$work/lib/$file"
  if cmp -s "lib/$file" "$work/lib/$file"; then
    echo "teeth: mutant '$name' does not apply to lib/$file"; missed=$((missed + 1)); continue
  fi
  if ! make --no-print-directory -s LIB="$work/lib" BUILD="$work/build" "$work/build/asan/torture" >"$work/build.log" 2>&1; then
    echo "teeth: mutant '$name' does not build"; tail -5 "$work/build.log"; missed=$((missed + 1)); continue
  fi
  # shellcheck disable=SC2086  # args is a list of words
  timeout 300 "$work/build/asan/torture" $args --report "$work/report.txt" >/dev/null 2>&1
  if grep -qF "$expect" "$work/report.txt"; then
    echo "teeth: mutant '$name' caught: $expect"
  else
    echo "teeth: mutant '$name' NOT caught (wanted '$expect')"; missed=$((missed + 1))
  fi
done
[ "$missed" -eq 0 ] && echo "teeth: every mutant caught" || exit 1
