#!/usr/bin/env bash
# Builds the fuzz targets the way OSS-Fuzz and ClusterFuzzLite do
# (.clusterfuzzlite/build.sh calls this). It honours the environment they set:
#   CC CFLAGS          compile everything (sanitizer and coverage flags come here)
#   CXX CXXFLAGS       link, when set (the engines are C++); else CC CFLAGS
#   LIB_FUZZING_ENGINE the engine: -fsanitize=fuzzer, or a libFuzzingEngine.a
#   OUT                where the results go
# and produces, for each target: $OUT/<t>, $OUT/<t>_seed_corpus.zip (the
# committed corpus), $OUT/<t>.dict and $OUT/<t>.options.
# Test it here with `make fuzz-ossfuzz-test`.
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-clang}
CFLAGS=${CFLAGS:-}
LIB_FUZZING_ENGINE=${LIB_FUZZING_ENGINE:--fsanitize=fuzzer}
: "${OUT:?OUT must name the output directory}"
LINK=${CXX:-$CC}
LINKFLAGS=${CXX:+${CXXFLAGS:-}}
LINKFLAGS=${LINKFLAGS:-$CFLAGS}
mkdir -p "$OUT"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
std=(-std=c11 -D_GNU_SOURCE -Ilib)

# The library, instrumented like the targets (CFLAGS carry the sanitizers and
# -fsanitize=fuzzer-no-link), so coverage guides through it.
for f in lib/*.c; do
  # shellcheck disable=SC2086  # CFLAGS is a list of flags
  $CC $CFLAGS "${std[@]}" -c "$f" -o "$work/lib_$(basename "$f" .c).o"
done
ar rcs "$work/libevloop.a" "$work"/lib_*.o

targets=(fuzz_buf fuzz_loop)
declare -A extra=([fuzz_buf]="" [fuzz_loop]="" [fuzz_cmd]="tools/testsrv/cmd.c"
                  [fuzz_resp]="tools/testsrv/resp.c" [fuzz_http]="tools/testsrv/http.c")
[ -f tools/testsrv/cmd.c ] && targets+=(fuzz_cmd)
[ -f tools/testsrv/resp.c ] && targets+=(fuzz_resp)
[ -f tools/testsrv/http.c ] && targets+=(fuzz_http)

for t in "${targets[@]}"; do
  objs=("$work/$t.o")
  # shellcheck disable=SC2086
  $CC $CFLAGS "${std[@]}" -c "fuzz/$t.c" -o "$work/$t.o"
  for src in ${extra[$t]}; do
    o=$work/${t}_$(basename "$src" .c).o
    # shellcheck disable=SC2086
    $CC $CFLAGS "${std[@]}" -c "$src" -o "$o"
    objs+=("$o")
  done
  # shellcheck disable=SC2086  # flags and the engine are lists
  $LINK $LINKFLAGS "${objs[@]}" "$work/libevloop.a" $LIB_FUZZING_ENGINE -o "$OUT/$t"
  cp "fuzz/$t.dict" "fuzz/$t.options" "$OUT/"
  rm -f "$OUT/${t}_seed_corpus.zip"
  if compgen -G "fuzz/corpus/$t/*" >/dev/null; then
    zip -q -j "$OUT/${t}_seed_corpus.zip" fuzz/corpus/"$t"/*
  fi
  echo "fuzz/build.sh: $OUT/$t"
done
