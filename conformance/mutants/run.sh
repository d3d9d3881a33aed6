#!/usr/bin/env bash
# Proves the conformance suite has teeth: each conformance/mutants/*.patch puts
# one fault back into a copy of the library (lib/ itself carries no fault
# switches), the test server is rebuilt on it, and the scenarios the patch
# names must fail.
#
#   conformance/mutants/run.sh [mutant-name...]    run (all when none named)
#   conformance/mutants/run.sh --refresh [name...] rewrite the patches against
#                                                  today's lib/ (after a lib change)
#
# A patch names the scenarios that must catch it, by test function name
# (parametrized cases count under their function's name), on one line:
#   # catches: test_a test_b
# Steps, each of which fails the run:
#  1. every patch must apply exactly: `patch --fuzz=0`, and a hunk that lands
#     only at an offset is refused too (the mutant may sit in the wrong place);
#     --refresh regenerates the patches so they apply cleanly again.
#  2. control: the same copy-and-build with no patch; every named scenario must
#     exist and pass, so a "caught" below is the mutant's doing.
#  3. each mutant: only its named scenarios run, and it is caught only when one
#     of them reports a test failure (pytest <failure>, or an error "failed on
#     teardown": the fixture's end-of-test checks; not a setup error, not a
#     FAILED line of some other test).
# Writes build/reports/conf-mutants.txt (table) and conf-mutants.xml (JUnit:
# the control and one case per mutant).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2
PYTHON=${PYTHON:-/usr/bin/python3}
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

refresh=0
if [ "${1:-}" = --refresh ]; then refresh=1; shift; fi
case "${1:-}" in -*) usage ;; esac
patches=()
if [ $# -gt 0 ]; then
  for m in "$@"; do
    [ -f "conformance/mutants/$m.patch" ] || { echo "run.sh: no mutant '$m'" >&2; exit 2; }
    patches+=("conformance/mutants/$m.patch")
  done
else
  patches=(conformance/mutants/*.patch)
fi

work=$(mktemp -d /tmp/evl-mutants.XXXXXX)
trap 'rm -rf "$work"' EXIT

# copy_tree DIR: the sources and Makefile fragments, without build/ and .git.
copy_tree() {
  mkdir -p "$1"
  tar -C "$top" --exclude=./build --exclude=./.git -cf - . | tar -C "$1" -xf -
}

# apply_exact PATCH DIR LOG: 0 when every hunk applies at its own line.
apply_exact() {
  patch -p1 --fuzz=0 --no-backup-if-mismatch -d "$2" <"$1" >"$3" 2>&1 || return 1
  ! grep -qiE 'offset|fuzz' "$3"
}

if [ "$refresh" -eq 1 ]; then
  for p in "${patches[@]}"; do
    name=$(basename "$p" .patch)
    tree="$work/$name"
    copy_tree "$tree"
    if ! patch -p1 --fuzz=0 --no-backup-if-mismatch -d "$tree" <"$p" >"$work/$name.log" 2>&1; then
      echo "$name: does not apply even at an offset; fix it by hand:"; sed 's/^/   /' "$work/$name.log"
      continue
    fi
    {
      sed -n '/^diff \|^--- /q;p' "$p"
      for f in $(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p"); do
        diff -u --label "a/$f" --label "b/$f" "$top/$f" "$tree/$f"
      done
    } >"$work/$name.new"
    if cmp -s "$p" "$work/$name.new"; then echo "$name: unchanged"
    else cp "$work/$name.new" "$p"; echo "$name: rewritten"; fi
  done
  exit 0
fi

# catches PATCH: the test function names the patch says must catch it.
catches() { sed -n 's/^# catches: *//p' "$1" | tr -s ' \t' '\n' | grep .; }

# run_named TREE LOG XML NAME...: builds TREE's ASan server and runs the named
# scenarios against it, JUnit to XML. Returns 3 when the build failed.
run_named() {
  local tree=$1 log=$2 xml=$3; shift 3
  if ! make -s -C "$tree" build/asan/evl-testsrv >"$log.build" 2>&1; then return 3; fi
  local k
  k=$(printf '%s\n' "$@" | paste -sd'|' | sed 's/|/ or /g')
  SERVER="$tree/build/asan/evl-testsrv" timeout 900 "$PYTHON" -m pytest -q -p no:cacheprovider \
    -k "$k" --junitxml="$xml" conformance >"$log" 2>&1
  return 0
}

# verdict XML NAME...: per named test, one line "name passed|failed|error|skipped|missing"
# (a function's worst case across its parameters).
verdict() {
  "$PYTHON" - "$@" <<'EOF'
import sys, xml.etree.ElementTree as ET
path, names = sys.argv[1], sys.argv[2:]
rank = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}
seen = {}
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError):
    root = None
for tc in ([] if root is None else root.iter("testcase")):
    base = tc.get("name", "").split("[")[0]
    if base not in names:
        continue
    kinds = {c.tag for c in tc}
    # The fixture's end-of-test checks (STATS settle, fd count, exit status)
    # fail in teardown: pytest reports those as errors "failed on teardown";
    # they are the test's own checks. Setup errors (no server, no tool) are not.
    teardown = any(c.tag == "error" and c.get("message", "").startswith("failed on teardown")
                   for c in tc)
    v = ("failed" if "failure" in kinds or teardown else "error" if "error" in kinds
         else "skipped" if "skipped" in kinds else "passed")
    if rank[v] >= rank.get(seen.get(base, "passed"), 0) or base not in seen:
        seen[base] = v
for n in names:
    print(n, seen.get(n, "missing"))
EOF
}

mkdir -p build/reports
report=build/reports/conf-mutants.txt
junit=build/reports/conf-mutants.xml
: >"$report"
cases=()   # "name|ok|message" for the JUnit file
failed=0
t_start=$(date +%s)

# --- 1. every patch applies exactly --------------------------------------------
all_named=()
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  mapfile -t named < <(catches "$p")
  if [ ${#named[@]} -eq 0 ]; then
    echo "run.sh: $p has no '# catches:' line" >&2; exit 2
  fi
  all_named+=("${named[@]}")
done
mapfile -t all_named < <(printf '%s\n' "${all_named[@]}" | sort -u)

# --- 2. control: the named scenarios pass on the unpatched tree -----------------
copy_tree "$work/control"
run_named "$work/control" "$work/control.log" "$work/control.xml" "${all_named[@]}"
rc=$?
if [ $rc -eq 3 ]; then
  bad="the unpatched tree does not build"
else
  bad=$(verdict "$work/control.xml" "${all_named[@]}" | awk '$2 != "passed"' | paste -sd',' | sed 's/,/, /g')
fi
if [ -n "$bad" ]; then
  echo "control run FAILED on the unpatched tree: $bad" | tee -a "$report"
  tail -n 30 "$work/control.log" 2>/dev/null
  cases+=("control|0|$bad"); failed=$((failed + 1))
else
  echo "control: ${#all_named[@]} named scenarios pass on the unpatched tree" | tee -a "$report"
  cases+=("control|1|")
fi

# --- 3. each mutant ------------------------------------------------------------
printf '%-28s %-8s %s\n' mutant result "named scenarios that failed" | tee -a "$report"
printf '%-28s %-8s %s\n' ---------------------------- -------- --------- | tee -a "$report"
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  tree="$work/$name"
  mapfile -t named < <(catches "$p")
  copy_tree "$tree"
  res="" detail=""
  if ! apply_exact "$p" "$tree" "$work/$name.patch.log"; then
    res=NOAPPLY
    detail="$(tr '\n' ' ' <"$work/$name.patch.log" | head -c 200) (run.sh --refresh $name)"
  else
    # Up to 3 runs: some faults show only under a timing (write_reorder
    # needs the socket to gain room between a flush and a reply, while the
    # client reads from another thread). A fault any run exposes is caught;
    # one that no run exposes survives, as before.
    for attempt in 1 2 3; do
      run_named "$tree" "$work/$name.log" "$work/$name.xml" "${named[@]}"
      if [ $? -eq 3 ]; then
        res=NOBUILD detail="$(tail -n 5 "$work/$name.log.build" | tr '\n' ' ')"
        break
      fi
      v=$(verdict "$work/$name.xml" "${named[@]}")
      caught=$(awk '$2 == "failed" { print $1 }' <<<"$v" | paste -sd' ')
      if [ -n "$caught" ]; then
        res=caught detail=$caught
        [ "$attempt" -gt 1 ] && detail="$caught (run $attempt)"
        break
      fi
      res=SURVIVED detail="named: $(tr '\n' ' ' <<<"$v") (3 runs)"
    done
  fi
  printf '%-28s %-8s %s\n' "$name" "$res" "$detail" | tee -a "$report"
  if [ "$res" = caught ]; then cases+=("$name|1|"); else cases+=("$name|0|$res: $detail"); failed=$((failed + 1)); fi
  rm -rf "$tree"
done

{
  printf '<?xml version="1.0" encoding="UTF-8"?>\n'
  printf '<testsuite name="conf-mutants" tests="%d" failures="%d" errors="0" time="%d">\n' \
    "${#cases[@]}" "$failed" $(( $(date +%s) - t_start ))
  for c in "${cases[@]}"; do
    IFS='|' read -r n ok msg <<<"$c"
    printf '  <testcase classname="conf-mutants" name="%s">' "$n"
    [ "$ok" = 1 ] || printf '<failure message="%s"/>' "$(sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/"/\&quot;/g' <<<"$msg")"
    printf '</testcase>\n'
  done
  printf '</testsuite>\n'
} >"$junit"

echo
if [ "$failed" -eq 0 ]; then
  echo "mutants: control passed, ${#patches[@]} of ${#patches[@]} mutants caught by their named scenarios"
else
  echo "mutants: $failed of $(( ${#patches[@]} + 1 )) checks failed (control + each mutant)"
  exit 1
fi
