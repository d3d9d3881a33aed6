#!/bin/sh
# Prints the linker flag a unit test program needs: -Wl,--wrap=X,... for every
# function __wrap_X the file defines (a definition starts a line), nothing
# when it defines none. unit.mk lists the same by hand; the coverage and
# mutant builds use this so a new wrapped test needs no edit here.
#   tools/coverage/unit-wraps.sh lib/test/test_write.c
[ $# -eq 1 ] || { echo "usage: $0 FILE.c" >&2; exit 2; }
sed -n 's/^[a-z].*[ *]__wrap_\([A-Za-z0-9_]*\)(.*/--wrap=\1/p' "$1" | sort -u | paste -sd, - | sed 's/^./-Wl,&/'
