# tools/faultinj/faultinj.mk: the torture run (systematic fault injection),
# a fragment of the top Makefile.
#
#   make torture         every call index of every kind, all errnos, once and
#                        persistent (SQLite-style: every call from the index on)
#   make torture-quick   the gate's form: the first 2 indices of each kind and
#                        the last one, plus the regression points
#   make torture-teeth   six mutants of lib/, each caught by the invariant it
#                        breaks (leak, fd leak, errno, on_close, spin, stall)
#   build/asan/torture --point SCENARIO:KIND:N:ERRNO    one run, shown
#
# The library's ASan objects are copied with objcopy --redefine-syms
# (binutils, which gcc depends on) so that their calls to malloc, epoll_ctl,
# read... land in faultinj.c; nothing else in the binary is redirected.

FI_DIR      := tools/faultinj
FI_SRCS     := $(FI_DIR)/faultinj.c $(FI_DIR)/check.c $(FI_DIR)/scenarios.c $(FI_DIR)/torture.c
FI_HDRS     := $(FI_DIR)/faultinj.h $(FI_DIR)/torture.h $(LIB)/evloop.h
FI_LIB_OBJS := $(LIB_SRCS:$(LIB)/%.c=$(ASAN)/fi/%.o)
TORTURE     := $(ASAN)/torture
TORTURE_REG := $(FI_DIR)/regressions.txt
TORTURE_QUICK ?= 2

# A copy of each library object calling fi_ instead; then nothing it calls
# may be outside syms.txt and harmless.txt.
$(ASAN)/fi/%.o: $(ASAN)/obj/%.o $(FI_DIR)/syms.txt $(FI_DIR)/harmless.txt
	@mkdir -p $(@D)
	objcopy --redefine-syms=$(FI_DIR)/syms.txt $< $@
	@left=$$(nm -u $@ | awk '{print $$2}' | grep -Ev '^(fi_|evl_|__asan|__ubsan|__sanitizer)' | \
	  grep -vxF -f <(grep -v '^#' $(FI_DIR)/harmless.txt) || true); \
	if [ -n "$$left" ]; then \
	  echo "faultinj: $< calls what torture cannot fail: $$left"; \
	  echo "  add it to $(FI_DIR)/syms.txt and faultinj.c, or argue it in harmless.txt"; rm -f $@; exit 1; fi

$(ASAN)/obj/faultinj/%.o: $(FI_DIR)/%.c $(FI_HDRS) | deps-build
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(TORTURE): $(FI_SRCS:$(FI_DIR)/%.c=$(ASAN)/obj/faultinj/%.o) $(FI_LIB_OBJS)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $^

.PHONY: torture torture-quick torture-teeth
torture: $(TORTURE)
	@mkdir -p $(REPORTS)
	$(TORTURE) --persist --regressions $(TORTURE_REG) --waivers $(FI_DIR)/waivers.txt --report $(REPORTS)/torture.txt \
	  --junit $(REPORTS)/torture.xml

torture-quick: $(TORTURE)
	@mkdir -p $(REPORTS)
	$(TORTURE) --quick $(TORTURE_QUICK) --regressions $(TORTURE_REG) --waivers $(FI_DIR)/waivers.txt \
	  --report $(REPORTS)/torture.txt --junit $(REPORTS)/torture.xml

WERROR_SRCS += $(FI_SRCS)

torture-teeth:
	$(FI_DIR)/teeth.sh
