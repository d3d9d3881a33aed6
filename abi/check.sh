#!/usr/bin/env bash
# The gate's `abi` stage (make abi-check): the shared library against the
# baseline committed in abi/libevloop.abi.xml, with libabigail's abidiff.
#
#   abi/check.sh LIBRARY.so HEADER    compare (what make abi-check runs)
#   abi/check.sh --baseline LIBRARY.so HEADER   rewrite the baseline
#
# Passes when abidiff finds no change, or only changes the policy of
# docs/ABI.md allows: new functions, and members appended at the end of
# evl_handler, evl_options and struct evl_stats (abi/evloop.suppr). Any other
# change (a member inserted or removed, a type or signature changed, a
# function removed) fails, unless the soname's major version is above the
# baseline's: an incompatible release, whose baseline is then regenerated
# (make abi-baseline) in the same change. abi/members.py checks the growth
# rule of the three structs member by member, besides abidiff.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
BASELINE=${BASELINE:-abi/libevloop.abi.xml}
SUPPR=abi/evloop.suppr
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

mode=check
[ "${1:-}" = --baseline ] && { mode=baseline; shift; }
if [ $# -ne 2 ] || [ ! -f "$1" ] || [ ! -f "$2" ]; then usage; fi
lib=$1 header=$2

# Only what evloop.h declares (the library's private structs are opaque
# there), without paths or line numbers that would churn the diff.
dump() {
  abidw --header-file "$header" --drop-private-types --drop-undefined-syms \
    --no-corpus-path --no-comp-dir-path --no-show-locs --type-id-style hash \
    --out-file "$2" "$1"
}

if [ "$mode" = baseline ]; then
  dump "$lib" "$BASELINE" || exit 1
  echo "abi: baseline $BASELINE written from $lib ($(grep -o "soname='[^']*'" "$BASELINE"))"
  exit 0
fi

[ -f "$BASELINE" ] || { echo "abi: no baseline $BASELINE (make abi-baseline)" >&2; exit 1; }
major_of() { sed -n 's/^libevloop\.so\.\([0-9][0-9]*\)$/\1/p'; }
base_soname=$(grep -o "soname='[^']*'" "$BASELINE" | head -n1 | cut -d"'" -f2)
cur_soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
base_major=$(major_of <<<"$base_soname") cur_major=$(major_of <<<"$cur_soname")
if [ -z "$base_major" ] || [ -z "$cur_major" ]; then
  echo "abi: cannot read the sonames (baseline '$base_soname', library '$cur_soname')" >&2
  exit 1
fi
echo "abi: $lib ($cur_soname) against $BASELINE ($base_soname)"

# No header filter here: the baseline holds only the public types, and the
# private structs behind evl_loop and evl_conn are declaration-only in it,
# which abidiff takes as compatible with any definition. (Filtering the
# library's side with --hf2 hid every change in libabigail 2.2.)
abidiff --suppressions "$SUPPR" --fail-no-debug-info "$BASELINE" "$lib"
rc=$?
# abidiff's exit status is a bit set: 1 error, 2 usage, 4 ABI change,
# 8 incompatible change.
if [ $((rc & 3)) -ne 0 ]; then
  echo "abi: FAIL: abidiff could not compare (exit $rc)"
  exit 1
fi
# The growth rule member by member (see abi/members.py for why): a failure
# here counts as an ABI change.
cur_xml=$(mktemp /tmp/evl-abi.XXXXXX)
trap 'rm -f "$cur_xml"' EXIT
dump "$lib" "$cur_xml" || { echo "abi: FAIL: abidw could not read $lib"; exit 1; }
/usr/bin/python3 abi/members.py "$BASELINE" "$cur_xml" || rc=$((rc | 4))
if [ "$cur_major" -lt "$base_major" ]; then
  echo "abi: FAIL: soname major $cur_major is below the baseline's $base_major"
  exit 1
fi
if [ $rc -eq 0 ]; then
  echo "abi: PASS: compatible with the baseline"
  exit 0
fi
if [ "$cur_major" -gt "$base_major" ]; then
  echo "abi: PASS: incompatible changes (abidiff exit $rc), and the soname major was bumped" \
    "($base_major -> $cur_major): regenerate the baseline (make abi-baseline) in this change"
  exit 0
fi
echo "abi: FAIL: the ABI changed incompatibly (abidiff exit $rc) and the soname major is" \
  "still $cur_major. Keep the change compatible (docs/ABI.md: grow structs only at" \
  "their end, add functions instead of changing them), or bump EVL_VERSION_MAJOR."
exit 1
