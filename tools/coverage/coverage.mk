# tools/coverage/coverage.mk: line and branch coverage of lib/, a gate stage.
# Included by the top Makefile.
#   make coverage   build lib/ with gcc --coverage into build/cov, run the unit
#                   programs, the conformance suite (against a coverage build
#                   of evl-testsrv) and every fuzz corpus (replayed through a
#                   coverage build of each target), then report with gcovr:
#                   build/reports/coverage/index.html (people),
#                   build/reports/coverage.xml (Cobertura, CI),
#                   build/reports/coverage.txt (one line per file).
# Fails below ci/coverage-floor, or when a GCOVR_EXCL marker in lib/ is not
# listed with its reason in ci/coverage-exclusions.md (tools/coverage/check.py).
# lib/*.h count too: the hot path's read (conn_fast.h) and the backend's
# wait (evl_poll.h) live in headers since issue 14.
# Only the library is instrumented: the harness around it is built without
# --coverage, so the report holds lib/ and nothing else.

COV        := $(BUILD)/cov
COV_CC     := gcc
# -Dalways_inline=noinline: the hot path forces inlining (run_once, reap,
# deliver, evl__conn_fast_read), which gcov would count once per call site,
# each site with the branches its constant arguments rule out (reap inlined
# nine times holds 54 branches). Compiled as functions, a source line's
# branches are counted once, which is what the floor is about.
COV_CFLAGS := $(BASE_CFLAGS) -O0 --coverage -Dalways_inline=noinline
COV_HARNESS_CFLAGS := $(BASE_CFLAGS) -O1
COV_LIB    := $(COV)/libevloop.a
COV_UNIT   := $(UNIT_NAMES:%=$(COV)/test/%)
COV_FUZZ   := $(FUZZ_TARGETS:%=$(COV)/replay/%)
COV_FLOOR  := ci/coverage-floor
COV_EXCL   := ci/coverage-exclusions.md

$(COV)/obj/%.o: $(LIB)/%.c $(LIB_HDRS) tools/coverage/coverage.mk | deps-build
	@mkdir -p $(@D)
	$(COV_CC) $(COV_CFLAGS) -c $< -o $@
$(COV_LIB): $(LIB_SRCS:$(LIB)/%.c=$(COV)/obj/%.o)
	$(AR) rcs $@ $^

# The unit programs, on the coverage lib. A program that defines __wrap_X
# is linked with --wrap=X, as unit.mk links it (tools/mutate does the same).
unit_wraps = $(shell tools/coverage/unit-wraps.sh $(1))
$(COV)/test/%: lib/test/%.c $(UNIT_DEPS) $(COV_LIB) | deps-build deps-unit
	@mkdir -p $(@D)
	$(COV_CC) $(COV_HARNESS_CFLAGS) $< $(UNIT_UTIL) $(COV_LIB) --coverage $(call unit_wraps,$<) $(UNIT_LDLIBS) -o $@

$(COV)/obj/testsrv/%.o: tools/testsrv/%.c $(TESTSRV_HDRS) | deps-build
	@mkdir -p $(@D)
	$(COV_CC) $(COV_HARNESS_CFLAGS) -c $< -o $@
$(COV)/evl-testsrv: $(TESTSRV_SRCS:tools/testsrv/%.c=$(COV)/obj/testsrv/%.o) $(COV_LIB)
	$(COV_CC) $(COV_HARNESS_CFLAGS) -o $@ $(filter %.o,$^) $(COV_LIB) --coverage $(TESTSRV_LIBS)

# fuzz/<t>.c + its extra sources + tools/coverage/replay.c (the main that
# libFuzzer would otherwise provide).
define COV_REPLAY_RULE
$(COV)/replay/$(1): fuzz/$(1).c $(fuzz_deps_$(1)) tools/coverage/replay.c $(FUZZ_HDRS) $(COV_LIB) | deps-build
	@mkdir -p $$(@D)
	$(COV_CC) $(COV_HARNESS_CFLAGS) fuzz/$(1).c $(fuzz_deps_$(1)) tools/coverage/replay.c $(COV_LIB) --coverage -o $$@
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call COV_REPLAY_RULE,$(t))))

.PHONY: coverage coverage-build coverage-run coverage-report
coverage-build: $(COV_UNIT) $(COV)/evl-testsrv $(COV_FUZZ)

# Every part runs even when one fails, so the report is complete; the target
# fails if any part did.
coverage-run: coverage-build | deps-unit deps-conformance
	@rm -f $(COV)/obj/*.gcda
	@mkdir -p $(REPORTS)
	@rc=0; \
	$(UNIT_RUN) --name coverage-unit --reports $(REPORTS) --timeout 120 $(COV_UNIT) || rc=1; \
	for t in $(FUZZ_TARGETS); do \
	  echo "replay $$t: fuzz/corpus/$$t"; \
	  timeout -k 5 300 $(COV)/replay/$$t fuzz/corpus/$$t >$(REPORTS)/coverage-replay-$$t.log 2>&1 \
	    || { echo "replay $$t failed:"; tail -n 20 $(REPORTS)/coverage-replay-$$t.log; rc=1; }; \
	  tail -n 1 $(REPORTS)/coverage-replay-$$t.log; \
	done; \
	SERVER=$(COV)/evl-testsrv $(PYTHON) -m pytest -q conformance \
	  --junitxml=$(REPORTS)/coverage-conformance.xml || rc=1; \
	exit $$rc

coverage-report: | deps-coverage
	@mkdir -p $(REPORTS)/coverage
	gcovr --root . --filter '$(LIB)/[^/]*\.[ch]$$' --object-directory $(COV)/obj \
	  --exclude-unreachable-branches \
	  --html-details $(REPORTS)/coverage/index.html --html-title 'evloop lib/ coverage' \
	  --cobertura $(REPORTS)/coverage.xml --json $(REPORTS)/coverage-full.json \
	  $(COV)/obj >/dev/null
	$(PYTHON) tools/coverage/check.py --json $(REPORTS)/coverage-full.json --floor $(COV_FLOOR) \
	  --exclusions $(COV_EXCL) --out $(REPORTS)/coverage.txt

coverage: | deps-coverage
	@rc=0; $(MAKE) --no-print-directory coverage-run || rc=1; \
	$(MAKE) --no-print-directory coverage-report || rc=1; exit $$rc
WERROR_SRCS += tools/coverage/replay.c
