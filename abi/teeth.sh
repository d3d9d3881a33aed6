#!/usr/bin/env bash
# The abi check's teeth: builds variants of the library from scratch copies
# of lib/ (LIB= BUILD= under a temporary directory) and runs abi/check.sh on
# each against the committed baseline. Incompatible changes must fail;
# compatible ones (docs/ABI.md) must pass.
#
#   abi/teeth.sh [VARIANT...]     all variants by default; --list names them
# With REPORTS set, writes $REPORTS/abi-teeth.xml (JUnit, one case per variant).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
MAKE=${MAKE:-make}

# name | expected | file(s, +-separated) | start of the line to change |
# what replaces that start (\n: newline). "END OF X" changes the first line
# starting with "}" after the line starting with X. The appends anchor on the
# struct's end, so members added later by the lead do not turn them into
# insertions; "int after max_events" fails either way: in the middle, or,
# while max_events is last, in evl_options' tail padding (docs/ABI.md).
VARIANTS=(
  "unchanged|pass|||"
  "options_member_appended|pass|evloop.h|} evl_options;|    size_t appended;\n} evl_options;"
  "options_int_after_max_events|fail|evloop.h|    int max_events;|    int max_events;\n    int appended;"
  "handler_member_appended|pass|evloop.h|} evl_handler;|    void (*on_appended)(evl_loop *l);\n} evl_handler;"
  "stats_member_appended|pass|evloop.h|END OF struct evl_stats {|    uint64_t appended;\n}"
  "function_added|pass|version.c|int evl_version(void)|int evl_added(void);\nint evl_added(void) { return 1; }\nint evl_version(void)"
  "private_struct_changed|pass|evl_int.h|    evl_handler h;|    int inserted;\n    evl_handler h;"
  "options_member_inserted_in_middle|fail|evloop.h|    size_t wbuf_low;|    size_t inserted;\n    size_t wbuf_low;"
  "options_member_inserted_in_padding|fail|evloop.h|    size_t rbuf_max;|    int inserted;\n    size_t rbuf_max;"
  "handler_member_inserted_in_middle|fail|evloop.h|    void (*on_read)(evl_conn *c);|    void (*on_inserted)(evl_conn *c);\n    void (*on_read)(evl_conn *c);"
  "stats_member_retyped|fail|evloop.h|    uint64_t iterations;|    uint32_t iterations;"
  "function_removed|fail|version.c|int evl_version(void)|static int evl_version_gone(void);\nstatic int evl_version_gone(void)"
  "return_type_changed|fail|evloop.h+version.c|int evl_version(void)|long evl_version(void)"
  "inserted_with_major_bump|pass|evloop.h|    size_t rbuf_max;|    int inserted;\n    size_t rbuf_max;"
)

if [ "${1:-}" = --list ]; then
  for v in "${VARIANTS[@]}"; do IFS='|' read -r n e _ <<<"$v"; printf '%-36s %s\n' "$n" "$e"; done
  exit 0
fi
tmp=$(mktemp -d /tmp/evl-abi-teeth.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
bad=0 ran=0 cases=()
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r name want file find repl <<<"$v"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  ran=$((ran + 1))
  lib=$tmp/$name/lib
  mkdir -p "$lib"
  cp lib/*.c lib/*.h "$lib"/
  if [ -n "$file" ]; then
    FIND=$find REPL=$repl /usr/bin/python3 - "$lib" "$file" <<'PY' || { echo "teeth: $name: edit failed"; bad=$((bad + 1)); continue; }
import os, sys
find, repl = os.environ["FIND"], os.environ["REPL"].replace("\\n", "\n")
for name in sys.argv[2].split("+"):
    p = os.path.join(sys.argv[1], name)
    s = open(p).read()
    lines = s.split("\n")
    if find.startswith("END OF "):
        start = next((i for i, l in enumerate(lines) if l.startswith(find[7:])), None)
        end = None if start is None else next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("}")), None)
        if end is None:
            sys.exit(f"{find!r}: no such block in {p}")
        lines[end] = repl + lines[end][1:]
        open(p, "w").write("\n".join(lines))
        continue
    line = next((l for l in lines if l.startswith(find)), None)
    if line is None:
        sys.exit(f"{find!r} not in {p}")
    open(p, "w").write(s.replace(line, repl + line[len(find):], 1))
PY
  fi
  if [ "$name" = inserted_with_major_bump ]; then
    sed -i 's/^#define EVL_VERSION_MAJOR [0-9]*/#define EVL_VERSION_MAJOR 99/' "$lib/evloop.h"
  fi
  log=$tmp/$name.log
  if ! $MAKE --no-print-directory -s LIB="$lib" BUILD="$tmp/$name/build" abi-so >"$log" 2>&1; then
    echo "teeth: $name: build failed"; tail -n 20 "$log"; bad=$((bad + 1)); continue
  fi
  so=$(find "$tmp/$name/build" -maxdepth 1 -type f -name 'libevloop.so.*.*.*')
  if abi/check.sh "$so" "$lib/evloop.h" >"$log" 2>&1; then got=pass; else got=fail; fi
  if [ "$got" = "$want" ]; then mark=ok; else mark=WRONG; bad=$((bad + 1)); fi
  printf 'teeth: %-36s want %-4s got %-4s %s\n' "$name" "$want" "$got" "$mark"
  cases+=("$name|$want|$got")
  if [ "$mark" = WRONG ] || [ -n "${TEETH_VERBOSE:-}" ]; then sed 's/^/   | /' "$log"; fi
done
[ "$ran" -gt 0 ] || { echo "teeth: no such variant: $*" >&2; exit 2; }
if [ -n "${REPORTS:-}" ] && mkdir -p "$REPORTS"; then
  {
    printf '<?xml version="1.0" encoding="UTF-8"?>\n'
    printf '<testsuite name="abi-teeth" tests="%d" failures="%d">\n' "$ran" "$bad"
    for c in "${cases[@]}"; do
      IFS='|' read -r n w g <<<"$c"
      if [ "$w" = "$g" ]; then
        printf '  <testcase classname="abi" name="%s"/>\n' "$n"
      else
        printf '  <testcase classname="abi" name="%s"><failure message="want %s, got %s"/></testcase>\n' "$n" "$w" "$g"
      fi
    done
    printf '</testsuite>\n'
  } >"$REPORTS/abi-teeth.xml"
fi
echo "teeth: $((ran - bad)) of $ran as expected"
[ "$bad" -eq 0 ]
