#!/usr/bin/env bash
# The gate's `install` stage (make install-check): what a user of the library
# gets from `make install`, checked from the outside.
#   1. make install DESTDIR=<temporary> PREFIX=/usr
#   2. the tree: header, libevloop.a, libevloop.so.X.Y.Z with soname
#      libevloop.so.X and both links, evloop.pc; the shared library exports
#      exactly the functions evloop.h declares (no evl__ internals)
#   3. the header compiles alone with -std=c11 -pedantic and only
#      -D_POSIX_C_SOURCE=200809L (no _GNU_SOURCE: it needs POSIX, sigset_t
#      and struct iovec, nothing more); every examples/*.c built with
#      pkg-config against that tree as a user would (the compiler's default
#      language, -Wall -Wextra -Werror), shared and --static; the README
#      shows examples/echo.c as it is
#   4. examples/smoke.py runs each build (127.0.0.1, processes stopped by PID)
#   5. make uninstall leaves nothing behind
# Environment: MAKE, CC, PYTHON (set by make); REPORTS: a directory for
# install-check.xml (JUnit, one case per step).
set -euo pipefail
cd "$(dirname "$0")/.." || exit 2
MAKE=${MAKE:-make}
CC=${CC:-cc}
PYTHON=${PYTHON:-/usr/bin/python3}
[ $# -eq 0 ] || { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

tmp=$(mktemp -d /tmp/evl-install.XXXXXX)
dest=$tmp/root
steps=() current=""
fail() { echo "install-check: $*" >&2; exit 1; }
step() { [ -z "$current" ] || steps+=("$current"); current=$*; echo "== $*"; }
# One JUnit case per step; the step running when the script exits non-zero
# is the failure.
finish() {
  local rc=$? s
  if [ -n "${REPORTS:-}" ] && mkdir -p "$REPORTS"; then
    {
      printf '<?xml version="1.0" encoding="UTF-8"?>\n'
      printf '<testsuite name="install" tests="%d" failures="%d">\n' \
        $((${#steps[@]} + 1)) $((rc != 0))
      for s in "${steps[@]}"; do
        printf '  <testcase classname="install" name="%s"/>\n' "${s//\"/&quot;}"
      done
      if [ "$rc" -eq 0 ]; then
        printf '  <testcase classname="install" name="%s"/>\n' "${current//\"/&quot;}"
      else
        printf '  <testcase classname="install" name="%s"><failure message="exit %d"/></testcase>\n' \
          "${current//\"/&quot;}" "$rc"
      fi
      printf '</testsuite>\n'
    } >"$REPORTS/install-check.xml"
  fi
  rm -rf "$tmp"
}
trap finish EXIT

step "make install DESTDIR=<temporary> PREFIX=/usr"
echo "   DESTDIR=$dest"
$MAKE --no-print-directory install DESTDIR="$dest" PREFIX=/usr
libdir=$dest/usr/lib
find "$dest" \( -type f -o -type l \) -printf '   %P %l\n' | sort

ver() { sed -n "s/^#define EVL_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$dest/usr/include/evloop.h"; }
major=$(ver MAJOR) version=$(ver MAJOR).$(ver MINOR).$(ver PATCH)
real=libevloop.so.$version soname=libevloop.so.$major

step "the tree"
for f in include/evloop.h lib/libevloop.a "lib/$real" lib/pkgconfig/evloop.pc; do
  if [ ! -f "$dest/usr/$f" ] || [ -L "$dest/usr/$f" ]; then fail "missing file /usr/$f"; fi
done
[ "$(readlink "$libdir/$soname")" = "$real" ] || fail "$soname does not link to $real"
[ "$(readlink "$libdir/libevloop.so")" = "$soname" ] || fail "libevloop.so does not link to $soname"
got_soname=$(readelf -d "$libdir/$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
readelf -d "$libdir/$real" | grep SONAME
[ "$got_soname" = "$soname" ] || fail "soname '$got_soname', want '$soname'"

step "exports: nm -D --defined-only"
nm -D --defined-only "$libdir/$real" | awk '{print $3}' | sort >"$tmp/exported"
# The functions the header declares: preprocessed, so comments and the
# sizing macros (evl_new -> evl_new_sized) are gone; an old entry kept for
# old programs is declared in parentheses, (evl_connect)(...), past its macro.
$CC -E -P "$dest/usr/include/evloop.h" | grep -oE '\<evl_[a-z0-9_]+ *\(|\(evl_[a-z0-9_]+\) *\(' |
  tr -d ' ()' | sort -u >"$tmp/declared"
echo "   $(wc -l <"$tmp/exported") symbols exported"
if ! diff -u "$tmp/declared" "$tmp/exported" >"$tmp/exports.diff"; then
  cat "$tmp/exports.diff"
  fail "the exports differ from the header's functions (- declared only, + exported only)"
fi
grep -q '^evl__' "$tmp/exported" && fail "internal evl__ symbols exported"

step "pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
pc_version=$(pkg-config --modversion evloop)
echo "   evloop $pc_version: $(pkg-config --cflags --libs evloop)"
[ "$pc_version" = "$version" ] || fail "evloop.pc says $pc_version, the header $version"

step "README shows examples/echo.c as it is"
awk '/^```c$/ { inblock = 1; n = 0; next }
     /^```$/ && inblock { inblock = 0; if (first ~ /examples\/echo\.c/) exit; next }
     inblock { if (n++ == 0) first = $0; buf[n] = $0; last = n }
     END { if (first !~ /examples\/echo\.c/) exit 1; for (i = 1; i <= last; i++) print buf[i] }' \
  README.md >"$tmp/readme-echo.c" || fail "README.md has no code block starting with examples/echo.c"
diff -u examples/echo.c "$tmp/readme-echo.c" || fail "README.md's echo example differs from examples/echo.c"

step "the header alone: -std=c11 -pedantic -D_POSIX_C_SOURCE=200809L"
printf '#include <evloop.h>\nint main(void) { return evl_version() == EVL_VERSION_NUMBER ? 0 : 1; }\n' >"$tmp/header.c"
# shellcheck disable=SC2046  # pkg-config's output is a list of words
$CC -std=c11 -pedantic -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
  $(pkg-config --cflags evloop) "$tmp/header.c" $(pkg-config --libs evloop) -o "$tmp/header" ||
  fail "evloop.h needs more than POSIX.1-2008 under -std=c11"
LD_LIBRARY_PATH=$libdir "$tmp/header" || fail "evl_version() differs from the header's EVL_VERSION_NUMBER"

step "examples: shared and static builds"
bin=$tmp/bin
mkdir -p "$bin"
cflags="-O2 -Wall -Wextra -Werror"
for src in examples/*.c; do
  name=$(basename "$src" .c)
  # shellcheck disable=SC2046,SC2086  # pkg-config's output is a list of words
  $CC $cflags $(pkg-config --cflags evloop) "$src" $(pkg-config --libs evloop) -o "$bin/$name"
  readelf -d "$bin/$name" | grep -q "NEEDED.*\[$soname\]" || fail "$name does not need $soname"
  # shellcheck disable=SC2046,SC2086
  $CC $cflags $(pkg-config --cflags evloop) "$src" \
    -Wl,-Bstatic $(pkg-config --static --libs evloop) -Wl,-Bdynamic -o "$bin/$name-static"
  if readelf -d "$bin/$name-static" | grep -q 'NEEDED.*libevloop'; then
    fail "$name-static still needs libevloop.so"
  fi
  echo "   $name, $name-static"
done
LD_LIBRARY_PATH=$libdir ldd "$bin/echo" | grep libevloop

step "smoke tests"
LD_LIBRARY_PATH=$libdir timeout 120 "$PYTHON" examples/smoke.py "$bin"
timeout 120 "$PYTHON" examples/smoke.py "$bin" -static

step "make uninstall"
$MAKE --no-print-directory uninstall DESTDIR="$dest" PREFIX=/usr
left=$(find "$dest" \( -type f -o -type l \) -printf '%P\n')
[ -z "$left" ] || fail "left after uninstall: $left"
echo "install-check: PASS (evloop $version)"
