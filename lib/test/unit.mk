# lib/test/unit.mk — the library's unit tests (cmocka), a fragment of the top
# Makefile. Each lib/test/test_*.c is one program, linked with testutil.c:
# an ASan+UBSan build in build/asan/test/ (what `make unit` runs, and the
# gate), and a release build in build/test/ for `make unit-valgrind` (valgrind
# and ASan cannot share a process; each finds what the other misses).
#
#   make unit            every ASan program, JUnit in build/reports/unit-*.xml
#   make unit-valgrind   every release program under valgrind (memcheck)
#   make unit-build      build both, run nothing
#   TU_FILTER='*fault4*' build/asan/test/test_read    one program, some tests
#   lib/test/promise_mutants.py   each test_promises test fails on its lib mutant
#   (make unit refuses a TU_FILTER: the stage runs every test or fails)

UNIT_SRCS   := $(sort $(wildcard lib/test/test_*.c))
UNIT_NAMES  := $(UNIT_SRCS:lib/test/%.c=%)
UNIT_ASAN   := $(UNIT_NAMES:%=$(ASAN)/test/%)
UNIT_REL    := $(UNIT_NAMES:%=$(BUILD)/test/%)
UNIT_UTIL   := lib/test/testutil.c
UNIT_DEPS   := $(UNIT_UTIL) lib/test/testutil.h $(LIB_HDRS)
UNIT_RUN    := lib/test/run-tests.sh
UNIT_LDLIBS := -lcmocka
UNIT_VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full \
                 --errors-for-leak-kinds=definite,indirect

# test_write counts the library's send()s and epoll_ctl()s through the
# linker's --wrap, which only redirects the calls made from the objects of
# that one link (see the top of test_write.c).
UNIT_WRAP := -Wl,--wrap=send,--wrap=sendto,--wrap=sendmsg,--wrap=write,--wrap=writev,--wrap=epoll_ctl
$(ASAN)/test/test_write $(BUILD)/test/test_write: UNIT_LDFLAGS = $(UNIT_WRAP)
# test_review arms accept4 and signalfd failures the same way.
$(ASAN)/test/test_review $(BUILD)/test/test_review: UNIT_LDFLAGS = -Wl,--wrap=accept4,--wrap=signalfd

$(ASAN)/test/%: lib/test/%.c $(UNIT_DEPS) $(ASAN_LIB) | deps-build deps-unit
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) $< $(UNIT_UTIL) $(ASAN_LIB) $(UNIT_LDFLAGS) $(UNIT_LDLIBS) -o $@

$(BUILD)/test/%: lib/test/%.c $(UNIT_DEPS) $(REL_LIB) | deps-build deps-unit
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $< $(UNIT_UTIL) $(REL_LIB) $(UNIT_LDFLAGS) $(UNIT_LDLIBS) -o $@

# ThreadSanitizer: the library and test_wakeup (threads call evl_wakeup
# while the loop runs). TSan and ASan cannot share a process.
TSAN        := $(BUILD)/tsan
TSAN_CFLAGS := $(BASE_CFLAGS) -O1 -fsanitize=thread -fno-omit-frame-pointer
UNIT_TSAN   := $(TSAN)/test/test_wakeup_tsan
$(TSAN)/test/%_tsan: lib/test/%.c $(UNIT_DEPS) $(LIB_SRCS) | deps-build deps-unit
	@mkdir -p $(@D)
	$(ASAN_CC) $(TSAN_CFLAGS) $< $(UNIT_UTIL) $(LIB_SRCS) $(UNIT_LDLIBS) -lpthread -o $@
$(ASAN)/test/test_wakeup $(BUILD)/test/test_wakeup: UNIT_LDLIBS += -lpthread

.PHONY: unit unit-build unit-valgrind
unit-build: $(UNIT_ASAN) $(UNIT_REL)

unit: deps-unit $(UNIT_ASAN) $(UNIT_TSAN)
	@$(UNIT_RUN) --name unit --reports $(REPORTS) --timeout 120 $(UNIT_ASAN) $(UNIT_TSAN)

# Slower (valgrind runs the code on a synthetic CPU), hence the longer timeout.
unit-valgrind: deps-unit $(UNIT_REL)
	@$(UNIT_RUN) --name valgrind --reports $(REPORTS) --timeout 600 \
	  --wrapper "$(UNIT_VALGRIND)" $(UNIT_REL)

CHECK_TARGETS += unit
WERROR_SRCS   += $(UNIT_SRCS) $(UNIT_UTIL)

# test_gaps fails chosen allocations and system calls of the library through
# --wrap (see the top of test_gaps.c); tools/coverage and tools/mutate link it
# the same way.
GAPS_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=epoll_create1,--wrap=epoll_ctl,--wrap=epoll_wait,--wrap=read,--wrap=signalfd,--wrap=fcntl,--wrap=accept4,--wrap=socket,--wrap=setsockopt,--wrap=getaddrinfo,--wrap=listen,--wrap=pthread_sigmask
$(ASAN)/test/test_gaps $(BUILD)/test/test_gaps: UNIT_LDFLAGS = $(GAPS_WRAP)
# test_gaps13: the same for the timers, connect, wakeup and overrides; its
# wrap list is read from the file (tools/coverage/unit-wraps.sh).
$(ASAN)/test/test_gaps13 $(BUILD)/test/test_gaps13: UNIT_LDFLAGS = $(shell tools/coverage/unit-wraps.sh lib/test/test_gaps13.c)
$(ASAN)/test/test_attack $(BUILD)/test/test_attack: UNIT_LDFLAGS = $(shell tools/coverage/unit-wraps.sh lib/test/test_attack.c)
$(ASAN)/test/test_hotpath $(BUILD)/test/test_hotpath: UNIT_LDFLAGS = $(shell tools/coverage/unit-wraps.sh lib/test/test_hotpath.c)
