# examples/examples.mk: the examples and the gate's `install` stage.
#   make install-check   install into a temporary DESTDIR, build every
#                        example against it with pkg-config (shared and
#                        static), smoke-test each, uninstall
# (examples/install-check.sh says what is checked). The examples are also
# compiled by `make werror` and analysed by `make lint`.

EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
WERROR_SRCS  += $(EXAMPLE_SRCS)

.PHONY: install-check
install-check: $(REL_LIB) $(SO_LIB) | deps-build deps-install
	MAKE="$(MAKE)" CC="$(CC)" PYTHON="$(PYTHON)" REPORTS="$(REPORTS)" examples/install-check.sh
