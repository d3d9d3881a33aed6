# stress/stress.mk: evl-stress, nbguard.so and the stress targets (stress/README.md).
# Included by the top Makefile; see its header for ALL_BINS, WERROR_SRCS and
# CHECK_TARGETS.

STRESS_SRCS := $(filter-out stress/guard_prog.c,$(sort $(wildcard stress/*.c)))
STRESS_HDRS := $(wildcard stress/*.h)
NBGUARD_SRC := tools/nbguard/nbguard.c

ALL_BINS      += $(BUILD)/evl-stress $(BUILD)/nbguard.so
WERROR_SRCS   += $(STRESS_SRCS) stress/guard_prog.c $(NBGUARD_SRC)
CHECK_TARGETS += guard-test stress-quick

$(BUILD)/evl-stress: $(STRESS_SRCS) $(STRESS_HDRS) | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -o $@ $(STRESS_SRCS)

# The client under the sanitizers too: make check runs it (stress-quick).
$(ASAN)/evl-stress: $(STRESS_SRCS) $(STRESS_HDRS) | deps-build
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $(STRESS_SRCS)

# Release only: preloading a non-sanitized library into a sanitized server is
# fine, and the guard must not change the timing it measures.
$(BUILD)/nbguard.so: $(NBGUARD_SRC) | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -shared -fPIC -o $@ $< -ldl

$(BUILD)/guard-prog: stress/guard_prog.c | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -o $@ $<
$(ASAN)/guard-prog: stress/guard_prog.c | deps-build
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $<

.PHONY: stress stress-quick stress-attacks stress-sndbuf stress-scale guard-test

# The main job: the release server under the guard, about 60-90 s.
# PLOT=1 also draws build/reports/stress-latency.png; STRESS_SERVER= tests
# another build of the server.
STRESS_SERVER ?= $(BUILD)/evl-testsrv
stress: deps-stress $(BUILD)/evl-testsrv $(BUILD)/evl-stress $(BUILD)/nbguard.so
	stress/run.sh --server $(STRESS_SERVER) --client $(BUILD)/evl-stress \
	  --guard $(BUILD)/nbguard.so $(if $(PLOT),--plot)

# Only the slowhttptest attacks of make stress (issue 14), ~60 s.
stress-attacks: deps-stress $(BUILD)/evl-testsrv $(BUILD)/evl-stress $(BUILD)/nbguard.so
	stress/run.sh --attacks-only --server $(STRESS_SERVER) --client $(BUILD)/evl-stress \
	  --guard $(BUILD)/nbguard.so

# The slow-read attack once per SO_SNDBUF (0 = the kernel's default): the
# kernel memory each pins, to choose the library's default from. ~75 s.
SNDBUF_SWEEP ?= 0 65536 16384
stress-sndbuf: deps-stress $(BUILD)/evl-testsrv $(BUILD)/evl-stress $(BUILD)/nbguard.so
	stress/run.sh --sndbuf-sweep "$(SNDBUF_SWEEP)" --server $(STRESS_SERVER) \
	  --client $(BUILD)/evl-stress --guard $(BUILD)/nbguard.so

# Not in make check: as many connections as the fd limits allow (N asked,
# default 100000), 1% active; the ceiling reached when the limit is lower.
SCALE_CONNS ?= 100000
stress-scale: $(BUILD)/evl-testsrv $(BUILD)/evl-stress
	stress/scale.sh --conns $(SCALE_CONNS) --server $(STRESS_SERVER) --client $(BUILD)/evl-stress

# The short version for make check: the sanitized server and client.
stress-quick: deps-stress $(ASAN)/evl-testsrv $(ASAN)/evl-stress $(BUILD)/nbguard.so
	stress/run.sh --quick --server $(ASAN)/evl-testsrv --client $(ASAN)/evl-stress \
	  --guard $(BUILD)/nbguard.so

guard-test: $(BUILD)/nbguard.so $(BUILD)/guard-prog $(ASAN)/guard-prog
	stress/guard_test.sh $(BUILD)/nbguard.so $(BUILD)/guard-prog $(ASAN)/guard-prog
