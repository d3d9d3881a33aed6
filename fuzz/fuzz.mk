# fuzz/ — libFuzzer and AFL++ targets (see fuzz/README.md).
#   make fuzz               every target FUZZ_TIME s (default 60), FUZZ_JOBS at once
#   make fuzz-afl           the same under afl-fuzz (ASan build + CMPLOG build)
#   make fuzz-smoke         the gate's part: whole corpus + FUZZ_SMOKE_TIME s each
#   make fuzz-ossfuzz-test  fuzz/build.sh as OSS-Fuzz runs it, then its seeds
#   make fuzz-build         only build build/fuzz/<target>
# Build dirs of their own (build/fuzz/obj, build/afl/...): no overlap with the
# top file's build/obj and build/asan/obj pattern rules.

FUZZ_CC         ?= clang
FUZZ_TIME       ?= 60
FUZZ_SMOKE_TIME ?= 20
FUZZ_JOBS       ?= 1
# Known open library bugs that the fuzzers step around while they look for
# others (fuzz/regressions/README.md); empty = every check strict.
FUZZ_KNOWN      ?=
FUZZ_DIR        := $(BUILD)/fuzz
AFL_DIR         := $(BUILD)/afl

# The parser targets need the test server's parsers.
FUZZ_CMD_SRC  := $(wildcard tools/testsrv/cmd.c)
FUZZ_RESP_SRC := $(wildcard tools/testsrv/resp.c)
FUZZ_HTTP_SRC := $(wildcard tools/testsrv/http.c)
FUZZ_TARGETS := fuzz_buf fuzz_loop $(if $(FUZZ_CMD_SRC),fuzz_cmd) $(if $(FUZZ_RESP_SRC),fuzz_resp) \
                $(if $(FUZZ_HTTP_SRC),fuzz_http)
FUZZ_HDRS    := fuzz/fuzz_common.h $(LIB_HDRS) $(wildcard tools/testsrv/cmd.h tools/testsrv/resp.h tools/testsrv/http.h)

# Sanitizers as in build/asan; the library gets coverage instrumentation too
# (fuzzer-no-link), so the fuzzer is guided by the library's branches.
FUZZ_CFLAGS := $(BASE_CFLAGS) -O1 $(SAN_FLAGS) -fsanitize=fuzzer-no-link
FUZZ_LDFLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

# Sources of each target besides fuzz/<target>.c (all built instrumented).
fuzz_deps_fuzz_buf  :=
fuzz_deps_fuzz_loop :=
fuzz_deps_fuzz_cmd  := $(FUZZ_CMD_SRC)
fuzz_deps_fuzz_resp := $(FUZZ_RESP_SRC)
fuzz_deps_fuzz_http := $(FUZZ_HTTP_SRC)

WERROR_SRCS   += fuzz/fuzz_buf.c fuzz/fuzz_loop.c fuzz/fuzz_loop_fi.c $(if $(FUZZ_CMD_SRC),fuzz/fuzz_cmd.c) \
                 $(if $(FUZZ_RESP_SRC),fuzz/fuzz_resp.c) $(if $(FUZZ_HTTP_SRC),fuzz/fuzz_http.c)
CHECK_TARGETS += fuzz-smoke

.PHONY: fuzz fuzz-build fuzz-smoke fuzz-afl fuzz-afl-build fuzz-ossfuzz-test fuzz-clean

# ---- libFuzzer build -------------------------------------------------------
$(FUZZ_DIR)/obj/%.o: $(LIB)/%.c $(LIB_HDRS) | deps-build deps-fuzz
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_DIR)/obj/tools/%.o: tools/%.c $(FUZZ_HDRS) | deps-build deps-fuzz
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_DIR)/libevloop.a: $(LIB_SRCS:$(LIB)/%.c=$(FUZZ_DIR)/obj/%.o)
	$(AR) rcs $@ $^

# $(1) = target: fuzz/<target>.c + its extra sources + the library archive.
define FUZZ_TARGET_RULES
$(FUZZ_DIR)/$(1): fuzz/$(1).c $(fuzz_deps_$(1):%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_DIR)/libevloop.a $(FUZZ_HDRS)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) $$(FUZZ_LDFLAGS) fuzz/$(1).c $(fuzz_deps_$(1):%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_DIR)/libevloop.a -o $$@
$(AFL_DIR)/$(1): fuzz/$(1).c $(fuzz_deps_$(1)) $(LIB_SRCS) $(FUZZ_HDRS)
	@mkdir -p $$(@D)
	AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 afl-clang-fast $$(BASE_CFLAGS) -O1 -fno-sanitize-recover=all -fsanitize=fuzzer $$(filter %.c,$$^) -o $$@
$(AFL_DIR)/cmplog/$(1): fuzz/$(1).c $(fuzz_deps_$(1)) $(LIB_SRCS) $(FUZZ_HDRS)
	@mkdir -p $$(@D)
	AFL_LLVM_CMPLOG=1 AFL_QUIET=1 afl-clang-fast $$(BASE_CFLAGS) -O1 -fsanitize=fuzzer $$(filter %.c,$$^) -o $$@
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_TARGET_RULES,$(t))))

# fuzz_loop_fi: fuzz_loop's loop under failures the input chooses. The
# library's fuzz objects are copied with their calls redirected to
# tools/faultinj (as tools/faultinj/faultinj.mk does for the torture run);
# not in FUZZ_TARGETS, whose AFL++, OSS-Fuzz and mutation builds link the
# plain library.
FUZZ_FI_OBJS := $(LIB_SRCS:$(LIB)/%.c=$(FUZZ_DIR)/fi/%.o) $(FUZZ_DIR)/obj/tools/faultinj/faultinj.o
FUZZ_ALL     := $(FUZZ_TARGETS) fuzz_loop_fi
$(FUZZ_DIR)/fi/%.o: $(FUZZ_DIR)/obj/%.o tools/faultinj/syms.txt
	@mkdir -p $(@D)
	objcopy --redefine-syms=tools/faultinj/syms.txt $< $@
$(FUZZ_DIR)/fuzz_loop_fi: fuzz/fuzz_loop_fi.c $(FUZZ_FI_OBJS) $(FUZZ_HDRS) tools/faultinj/faultinj.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_LDFLAGS) fuzz/fuzz_loop_fi.c $(FUZZ_FI_OBJS) -o $@

fuzz-build: $(FUZZ_ALL:%=$(FUZZ_DIR)/%) | deps-build deps-fuzz
fuzz-afl-build: $(FUZZ_TARGETS:%=$(AFL_DIR)/%) $(FUZZ_TARGETS:%=$(AFL_DIR)/cmplog/%) | deps-fuzz

# ---- running: fuzz/run.sh holds the logic (logs, summary, reproduce line) ----
fuzz_comma := ,
fuzz_empty :=
export FUZZ_KNOWN_LIST := $(subst $(fuzz_empty) $(fuzz_empty),$(fuzz_comma),$(strip $(FUZZ_KNOWN)))
fuzz: fuzz-build | deps-fuzz
	@fuzz/run.sh libfuzzer --time $(FUZZ_TIME) --jobs $(FUZZ_JOBS) $(FUZZ_ALL)

fuzz-smoke: fuzz-build | deps-fuzz
	@fuzz/run.sh smoke --time $(FUZZ_SMOKE_TIME) --jobs $(FUZZ_JOBS) $(FUZZ_ALL)

fuzz-afl: fuzz-afl-build | deps-fuzz
	@fuzz/run.sh afl --time $(FUZZ_TIME) --jobs $(FUZZ_JOBS) $(FUZZ_TARGETS)

# fuzz/build.sh with the settings OSS-Fuzz uses for libFuzzer+ASan, then every
# produced binary over the seeds in its own zip.
fuzz-ossfuzz-test: | deps-build deps-fuzz
	rm -rf $(BUILD)/oss-fuzz-test
	CC=$(FUZZ_CC) CFLAGS="-fsanitize=address,fuzzer-no-link" LIB_FUZZING_ENGINE=-fsanitize=fuzzer \
	  OUT=$(CURDIR)/$(BUILD)/oss-fuzz-test SRC=$(CURDIR) fuzz/build.sh
	@fuzz/run.sh ossfuzz-test --out $(BUILD)/oss-fuzz-test $(FUZZ_TARGETS)

fuzz-clean:
	rm -rf $(FUZZ_DIR) $(AFL_DIR) $(BUILD)/oss-fuzz-test
