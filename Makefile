# evloop — build and entry points (README.md: "Make targets").
# This file holds what every part shares; each part adds its own rules in its
# own fragment (lib/test/unit.mk, tools/tools.mk, conformance/conformance.mk,
# stress/stress.mk, fuzz/fuzz.mk, bench/bench.mk, ci/ci.mk), so the parts stay
# independent. A fragment appends its release binaries to ALL_BINS, its C
# sources to WERROR_SRCS, and its gate targets to CHECK_TARGETS.
.DEFAULT_GOAL := all
SHELL := /bin/bash
.DELETE_ON_ERROR:

BUILD   := build
ASAN    := $(BUILD)/asan
REPORTS := $(BUILD)/reports
PYTHON  ?= /usr/bin/python3
CC      ?= cc
ASAN_CC ?= clang

# LIB=dir gates another copy of the library: every harness binary (unit
# tests, test server, stress, fuzz targets) is built from dir/*.c with
# -Idir instead of lib/. dir needs evloop.h, and buf.h for the buffer's unit
# test and fuzz target. Use a fresh BUILD= (or make clean) when switching.
LIB      ?= lib

WARN        := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
               -Wpointer-arith -Wformat=2 -Wvla
EXTRA_CFLAGS ?=
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I$(LIB) $(WARN) -g $(EXTRA_CFLAGS)
REL_CFLAGS  := $(BASE_CFLAGS) -O2
SAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 $(SAN_FLAGS)
# Leaks are failures; every sanitizer error aborts the process (non-zero).
export ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

LIB_SRCS := $(sort $(wildcard $(LIB)/*.c))
LIB_HDRS := $(wildcard $(LIB)/*.h)
REL_LIB  ?= $(BUILD)/libevloop.a
ASAN_LIB ?= $(ASAN)/libevloop.a

ALL_BINS      :=
WERROR_SRCS   := $(LIB_SRCS)
CHECK_TARGETS :=

-include lib/test/unit.mk tools/tools.mk conformance/conformance.mk \
         stress/stress.mk fuzz/fuzz.mk bench/bench.mk ci/ci.mk \
         lib/install.mk examples/examples.mk abi/abi.mk \
         tools/faultinj/faultinj.mk \
         tools/coverage/coverage.mk tools/mutate/mutate.mk

.PHONY: all check fresh-check lint werror clean deps-%
all: deps-build $(REL_LIB) $(ALL_BINS)

$(BUILD)/obj/%.o: $(LIB)/%.c $(LIB_HDRS) | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -c $< -o $@
$(ASAN)/obj/%.o: $(LIB)/%.c $(LIB_HDRS) | deps-build
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(BUILD)/libevloop.a: $(LIB_SRCS:$(LIB)/%.c=$(BUILD)/obj/%.o)
	$(AR) rcs $@ $^
$(ASAN)/libevloop.a: $(LIB_SRCS:$(LIB)/%.c=$(ASAN)/obj/%.o)
	$(AR) rcs $@ $^

# Every C file of the project, warning-free under gcc and clang at -O2
# (some warnings only appear with optimisation).
werror: | deps-build deps-headers
	@set -e; for cc in gcc clang; do for f in $(WERROR_SRCS); do \
	  $$cc $(BASE_CFLAGS) -O2 -Werror -c $$f -o /dev/null || { echo "werror: $$cc $$f"; exit 1; }; \
	done; echo "werror: $$cc clean on $(words $(WERROR_SRCS)) files"; done

# The gate (ci/gate.sh; README.md: "Gate your fork"): every stage, timed, with a summary table and reports.
check: | deps-gate
	@ci/gate.sh $(GATE_ARGS)

# The README's two commands in a clean clone on a minimal Debian 12 root
# (tools/fresh-check.sh). Not part of check: it downloads a few hundred MB.
fresh-check: | deps-fresh
	@tools/fresh-check.sh $(FRESH_ARGS)

# Static analysis: zero findings (suppressions carry their reason).
lint: | deps-lint deps-headers
	cppcheck -q --enable=warning,style,performance,portability --std=c11 -D_GNU_SOURCE \
	  --inline-suppr --error-exitcode=1 -I$(LIB) $(WERROR_SRCS)
	clang-tidy --quiet $(WERROR_SRCS) -- $(BASE_CFLAGS)

# Installs what a target needs (tools/deps.sh, docs/DESIGN.md §4): a no-op when all is present.
deps-%:
	@tools/deps.sh $*

clean:
	rm -rf $(BUILD)
