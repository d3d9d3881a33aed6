# tools/tools.mk: evl-testsrv, the scripted test server (docs/PROTOCOL.md).
# Included by the top Makefile; see its header for ALL_BINS, WERROR_SRCS and
# CHECK_TARGETS. nbguard.so is built by stress/stress.mk.
#   build/evl-testsrv        release (-O2), on $(REL_LIB)
#   build/asan/evl-testsrv   clang ASan+UBSan, on $(ASAN_LIB): what make check drives

TESTSRV_SRCS := $(sort $(wildcard tools/testsrv/*.c))
TESTSRV_HDRS := $(wildcard tools/testsrv/*.h) $(LIB)/evloop.h
TESTSRV_LIBS := -lz

ALL_BINS    += $(BUILD)/evl-testsrv
WERROR_SRCS += $(TESTSRV_SRCS)

$(BUILD)/obj/testsrv/%.o: tools/testsrv/%.c $(TESTSRV_HDRS) | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -c $< -o $@
$(ASAN)/obj/testsrv/%.o: tools/testsrv/%.c $(TESTSRV_HDRS) | deps-build
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(BUILD)/evl-testsrv: $(TESTSRV_SRCS:tools/testsrv/%.c=$(BUILD)/obj/testsrv/%.o) $(REL_LIB)
	$(CC) $(REL_CFLAGS) -o $@ $(filter %.o,$^) $(REL_LIB) $(TESTSRV_LIBS)
$(ASAN)/evl-testsrv: $(TESTSRV_SRCS:tools/testsrv/%.c=$(ASAN)/obj/testsrv/%.o) $(ASAN_LIB)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $(filter %.o,$^) $(ASAN_LIB) $(TESTSRV_LIBS)
