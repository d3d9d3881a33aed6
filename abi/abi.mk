# abi/abi.mk: the gate's `abi` stage. The policy is docs/ABI.md.
#   make abi-check      the built shared library against abi/libevloop.abi.xml
#   make abi-baseline   rewrite the baseline from the built library (after a
#                       compatible addition, or with a soname major bump)
#   make abi-teeth      shows that the check fails on incompatible changes
#                       and passes compatible ones (abi/teeth.sh; not in the gate)

.PHONY: abi-check abi-baseline abi-teeth
abi-check: $(SO_LIB) | deps-build deps-abi
	abi/check.sh $(SO_LIB) $(LIB)/evloop.h

abi-baseline: $(SO_LIB) | deps-build deps-abi
	abi/check.sh --baseline $(SO_LIB) $(LIB)/evloop.h

abi-teeth: | deps-build deps-abi
	MAKE="$(MAKE)" REPORTS="$(REPORTS)" abi/teeth.sh

# The shared library alone (abi/teeth.sh builds variants with LIB= BUILD=).
.PHONY: abi-so
abi-so: $(SO_LIB)
