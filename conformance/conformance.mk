# conformance/conformance.mk: the pytest scenario suite (conformance/README.md).
# Included by the top Makefile; see its header for CHECK_TARGETS.
#   make conformance                       against build/asan/evl-testsrv (built first)
#   make conformance SERVER=path/to/server against another build (a fork's)
# JUnit XML goes to $(REPORTS)/conformance.xml.

SERVER ?= $(ASAN)/evl-testsrv
export SERVER

CHECK_TARGETS += conformance

# Build the server only when it is ours; a given SERVER is used as it is.
CONFORMANCE_SERVER_DEP := $(if $(filter $(ASAN)/evl-testsrv,$(SERVER)),$(ASAN)/evl-testsrv)

.PHONY: conformance
conformance: deps-conformance $(CONFORMANCE_SERVER_DEP)
	@mkdir -p $(REPORTS)
	$(PYTHON) -m pytest -q conformance --junitxml=$(REPORTS)/conformance.xml

# The suite's teeth (the gate's conf-mutants stage, ~1.5 min): a control run
# on an unpatched copy, then each conformance/mutants/*.patch re-introduces one
# fault into a temporary copy of lib/ and the scenarios the patch names must
# fail. Table in $(REPORTS)/conf-mutants.txt, JUnit in conf-mutants.xml.
#   make conformance-mutants                 all of them
#   conformance/mutants/run.sh --refresh     after a lib/ change moved a hunk
#   make conformance-mutants MUTANTS="fault1_eof_ignored write_reorder"
MUTANTS ?=
.PHONY: conformance-mutants
conformance-mutants: deps-conformance
	@mkdir -p $(REPORTS)
	PYTHON=$(PYTHON) conformance/mutants/run.sh $(MUTANTS)
