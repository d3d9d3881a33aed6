# tools/mutate/mutate.mk: mutation testing of lib/*.c (tools/mutate/run.py).
# Not in make check (minutes per hundred mutants); run it by hand or in a fork:
#   make mutants MUTANTS_N=300 MUTANTS_SEED=1           unit + fuzz corpora
#   make mutants MUTANTS_CONFORMANCE=1                  + conformance for survivors
#   make mutants MUTANTS_ONLY="m1234abcd m5678ef01"     those mutants only
#   make mutants MUTANTS_SURVIVORS=build/reports/mutants.json
#                      re-run the survivors of that run (after adding tests)
# Report: build/reports/mutants.md (score, every survivor with its diff);
# equivalent mutants are argued in conformance/mutants/equivalent.md.
# The work happens in build/mutants (a private copy of lib/), niced.
MUTANTS_N     ?= 100
MUTANTS_SEED  ?= 1
MUTANTS_ONLY  ?=
MUTANTS_CONFORMANCE ?=
MUTANTS_SURVIVORS ?=

.PHONY: mutants mutants-list
MUTANTS_ARGS = --n $(MUTANTS_N) --seed $(MUTANTS_SEED) --lib $(LIB) \
  --build $(BUILD)/mutants --out $(REPORTS)/mutants.md \
  --cc='$(ASAN_CC)' --cflags='$(ASAN_CFLAGS)' --ldlibs='$(UNIT_LDLIBS)' \
  --unit $(UNIT_SRCS) --util $(UNIT_UTIL) \
  --fuzz $(foreach t,$(FUZZ_TARGETS),$(t):$(subst $(fuzz_empty) ,:,$(fuzz_deps_$(t)))) \
  --python $(PYTHON) $(if $(MUTANTS_CONFORMANCE),--conformance) \
  $(if $(MUTANTS_ONLY),--only $(MUTANTS_ONLY)) \
  $(if $(MUTANTS_SURVIVORS),--survivors $(MUTANTS_SURVIVORS))

mutants: | deps-build deps-unit deps-conformance
	nice -n 10 $(PYTHON) tools/mutate/run.py $(MUTANTS_ARGS)

mutants-list:
	@$(PYTHON) tools/mutate/run.py $(MUTANTS_ARGS) --list
