#!/usr/bin/env bash
# Writes build/reports/index.html: one page linking every report of the gate.
#
#   ci/report-index.sh [REPORTS_DIR]     (default build/reports)
#
# The page: the stage table from summary.json (result, tests, seconds) with,
# per stage, its log and every file the stage wrote (<stage>*: JUnit XML,
# per-program logs, JSON); the last lines of a failing stage's log; the
# coverage report (coverage/index.html) when present; the stress and bench
# charts (stress*-latency.png, bench.png) and figures (JSON, bench.md) when
# present; every other file.
# Static HTML, relative links, no network resources. ci/gate.sh calls it last.
# After writing, every link on the page is checked to name an existing file:
# exit 1 if one does not, 2 on usage errors.
set -uo pipefail

usage() { sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 2; }
case "${1:-}" in -h|--help) usage ;; -*) echo "report-index: unknown argument '$1'" >&2; usage ;; esac
[ $# -le 1 ] || usage
dir=${1:-build/reports}
summary=$dir/summary.json
[ -f "$summary" ] || { echo "report-index: no $summary (run ci/gate.sh first)" >&2; exit 1; }
out=$dir/index.html

esc() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }
# A file name as a relative URL: percent-encode what a browser would misread.
url() { printf '%s' "$1" | sed -e 's/%/%25/g' -e 's/ /%20/g' -e 's/#/%23/g' -e 's/?/%3F/g' -e 's/"/%22/g'; }
link() { printf '<a href="%s">%s</a>' "$(url "$1")" "$(printf '%s' "${2:-$1}" | esc)"; }

# summary.json is written by ci/gate.sh, one stage per line:
#   {"stage": "unit", "result": "PASS", "tests": 42, "seconds": 12.3},
field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" <<<"$2"; }
stages=() results=() tests=() secs=()
while IFS= read -r line; do
  case "$line" in *'"stage"'*) ;; *) continue ;; esac
  stages+=("$(field stage "$line")"); results+=("$(field result "$line")")
  tests+=("$(field tests "$line")"); secs+=("$(field seconds "$line")")
done <"$summary"
total=$(sed -n 's/.*"total_seconds": *\([0-9.]*\).*/\1/p' "$summary")
failed=$(sed -n 's/.*"failed": *\([0-9]*\).*/\1/p' "$summary")
passed=$(( ${#stages[@]} - ${failed:-0} ))
head=$(git -C "$dir" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$dir" status --porcelain --untracked-files=no 2>/dev/null)" ] || head+=" (with uncommitted changes)"

# Top-level entries of the reports directory, sorted; those linked from a
# section are marked, and the rest are listed at the end.
entries=()
for e in "$dir"/* "$dir"/.[!.]*; do
  [ -e "$e" ] || continue
  e=${e##*/}
  case "$e" in index.html|index.html.tmp) ;; *) entries+=("$e") ;; esac
done
declare -A shown=([summary.json]=1)

stage_files() {  # stage_files NAME: the entries the stage wrote, its log first
  local n=$1 e
  [ -e "$dir/$n.log" ] && echo "$n.log"
  for e in "${entries[@]}"; do
    [ "$e" = "$n.log" ] && continue
    case "$e" in "$n"|"$n".*|"$n"-*) echo "$e" ;; esac
  done
}

{
  cat <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>evloop gate report</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } th, td { padding: .3em .8em; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.PASS { color: #176f2c; font-weight: bold; } .FAIL { color: #b00020; font-weight: bold; }
.files a { margin-right: .6em; white-space: nowrap; } .files div { margin: .1em 0; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 13px; }
img { max-width: 100%; border: 1px solid #ddd; } .muted { color: #777; }
</style></head><body>
<h1>evloop gate report</h1>
EOF
  verdict=PASS; [ "${failed:-0}" -eq 0 ] || verdict=FAIL
  printf '<p><span class="%s">gate: %d passed, %d failed</span> in %s s &middot; commit %s &middot; written %s &middot; %s &middot; %s</p>\n' \
    "$verdict" "$passed" "${failed:-0}" "${total:-?}" "$(printf '%s' "$head" | esc)" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(link summary.json)" \
    "$( [ -e "$dir/gate.xml" ] && link gate.xml 'gate.xml (JUnit, one case per stage)')"
  shown[gate.xml]=1

  echo '<h2>Stages</h2>'
  echo '<table><tr><th>stage</th><th>result</th><th>tests</th><th>seconds</th><th>log and reports</th></tr>'
  for i in "${!stages[@]}"; do
    s=${stages[$i]}
    printf '<tr><td>%s</td><td class="%s">%s</td><td class="num">%s</td><td class="num">%s</td><td class="files">' \
      "$(printf '%s' "$s" | esc)" "${results[$i]}" "${results[$i]}" "${tests[$i]}" "${secs[$i]}"
    # One line each: logs, JUnit XML, the rest (JSON, directories).
    mapfile -t files < <(stage_files "$s")
    for kind in log xml other; do
      line=
      for f in "${files[@]}"; do
        [ -n "$f" ] || continue
        case "$kind:$f" in log:*.log|xml:*.xml) ;; other:*.log|other:*.xml) continue ;; other:*) ;; *) continue ;; esac
        shown[$f]=1
        [ -d "$dir/$f" ] && f=$f/
        line+="$(link "$f") "
      done
      [ -z "$line" ] || printf '<div>%s</div>' "$line"
    done
    echo '</td></tr>'
  done
  echo '</table>'

  for i in "${!stages[@]}"; do
    s=${stages[$i]}
    [ "${results[$i]}" = FAIL ] && [ -f "$dir/$s.log" ] || continue
    printf '<h2>%s failed: last lines of %s</h2>\n<pre>' "$(printf '%s' "$s" | esc)" "$(link "$s.log")"
    tail -n 40 "$dir/$s.log" | esc
    echo '</pre>'
  done

  echo '<h2>Coverage</h2>'
  if [ -f "$dir/coverage/index.html" ]; then
    printf '<p>%s</p>\n' "$(link coverage/index.html 'coverage report (coverage/index.html)')"
    shown[coverage]=1
  else
    echo '<p class="muted">No coverage report in this run (<code>make coverage</code> writes coverage/index.html).</p>'
  fi

  echo '<h2>Stress and bench</h2>'
  charts=0
  for c in stress-latency.png stress-quick-latency.png bench.png; do
    [ -f "$dir/$c" ] || continue
    charts=$((charts + 1)); shown[$c]=1
    printf '<p>%s<br><img src="%s" alt="%s"></p>\n' "$(link "$c")" "$(url "$c")" "$c"
  done
  [ "$charts" -gt 0 ] ||
    echo '<p class="muted">No charts in this run (<code>make stress PLOT=1</code> draws stress-latency.png, <code>make bench</code> bench.png).</p>'
  data=
  for t in stress.json stress-quick.json bench.md bench.json; do
    [ -f "$dir/$t" ] && { data+="$(link "$t") "; shown[$t]=1; }
  done
  [ -z "$data" ] || printf '<p class="files">Figures: %s</p>\n' "$data"

  rest=()
  for e in "${entries[@]}"; do [ -n "${shown[$e]+x}" ] || rest+=("$e"); done
  if [ ${#rest[@]} -gt 0 ]; then
    echo '<h2>Other files</h2><p class="files">'
    for e in "${rest[@]}"; do
      [ -d "$dir/$e" ] && e=$e/
      link "$e"
    done
    echo '</p>'
  fi
  echo '</body></html>'
} >"$out.tmp" && mv "$out.tmp" "$out"

# Every local link and image must name a file that exists.
bad=0
while IFS= read -r ref; do
  case "$ref" in *://*|'#'*) continue ;; esac
  path=$(printf '%s' "$ref" | sed -e 's/%20/ /g' -e 's/%23/#/g' -e 's/%3F/?/g' -e 's/%22/"/g' -e 's/%25/%/g')
  [ -e "$dir/$path" ] || { echo "report-index: broken link in $out: $ref" >&2; bad=1; }
done < <(grep -o -E '(href|src)="[^"]*"' "$out" | sed -E 's/^(href|src)="(.*)"$/\2/')
[ $bad -eq 0 ] || exit 1
echo "report-index: $out"
