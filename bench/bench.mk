# bench/bench.mk: the side-by-side benchmark (bench/README.md) and the parser tests.
# Included by the top Makefile; see its header for ALL_BINS, WERROR_SRCS and
# CHECK_TARGETS.
#   make bench                 full run, under 10 minutes (BENCH_QUICK=1: about one)
#   make bench-build           only the peers and the load generator
#   make parsers-test          the resp/http parser tests under ASan+UBSan
# The peers are built with the same compiler and flags as the test server
# ($(CC) $(REL_CFLAGS)), so the comparison is of code, not of builds.

BENCH_DIR    := $(BUILD)/bench
PEER_NAMES   := raw libuv libevent libev
PEER_BINS    := $(PEER_NAMES:%=$(BENCH_DIR)/echo_%)
PEER_COMMON  := bench/peers/peer_common.c bench/peers/peer_common.h
LDGEN_SRCS   := bench/ldgen.c bench/ldgen_net.c bench/ldgen_pingpong.c bench/ldgen_pump.c \
                bench/ldgen_idle.c
PARSER_SRCS  := tools/testsrv/resp.c tools/testsrv/http.c
PARSER_HDRS  := tools/testsrv/resp.h tools/testsrv/http.h

peer_libs_raw      :=
peer_libs_libuv    := -luv
peer_libs_libevent := -levent
peer_libs_libev    := -lev

WERROR_SRCS   += $(LDGEN_SRCS) bench/peers/peer_common.c $(PEER_NAMES:%=bench/peers/echo_%.c) \
                 bench/parsers_test.c
CHECK_TARGETS += parsers-test

.PHONY: bench bench-build parsers-test

$(BENCH_DIR)/echo_%: bench/peers/echo_%.c $(PEER_COMMON) | deps-build deps-bench
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -o $@ $< bench/peers/peer_common.c $(peer_libs_$*)

$(BENCH_DIR)/ldgen: $(LDGEN_SRCS) bench/ldgen.h | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -o $@ $(LDGEN_SRCS)

bench-build: $(PEER_BINS) $(BENCH_DIR)/ldgen

bench: deps-bench $(BUILD)/evl-testsrv $(PEER_BINS) $(BENCH_DIR)/ldgen
	BUILD=$(BUILD) PYTHON=$(PYTHON) bench/run.sh

$(ASAN)/parsers-test: bench/parsers_test.c $(PARSER_SRCS) $(PARSER_HDRS) | deps-build
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ bench/parsers_test.c $(PARSER_SRCS)

parsers-test: $(ASAN)/parsers-test
	$(ASAN)/parsers-test
