# lib/install.mk: the shared library, evloop.pc, make install / uninstall.
# A fragment of the top Makefile.
#
#   make install   [PREFIX=/usr/local] [DESTDIR=] [LIBDIR=$(PREFIX)/lib]
#   make uninstall (same variables)
#
# installs include/evloop.h, lib/libevloop.a, lib/libevloop.so.MAJOR.MINOR.PATCH
# (soname libevloop.so.MAJOR, and the links libevloop.so.MAJOR and
# libevloop.so), lib/pkgconfig/evloop.pc. The version is read from the
# EVL_VERSION_* macros of evloop.h: defined once, there. Only the public evl_
# symbols are exported (lib/evloop.map); docs/ABI.md says when MAJOR changes.

evl_version_part = $(shell sed -n 's/^\#define EVL_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' $(LIB)/evloop.h)
EVL_MAJOR   := $(call evl_version_part,MAJOR)
EVL_MINOR   := $(call evl_version_part,MINOR)
EVL_PATCH   := $(call evl_version_part,PATCH)
EVL_VERSION := $(EVL_MAJOR).$(EVL_MINOR).$(EVL_PATCH)
EVL_SONAME  := libevloop.so.$(EVL_MAJOR)
SO_LIB      := $(BUILD)/libevloop.so.$(EVL_VERSION)
EVL_MAP     ?= lib/evloop.map
PIC_OBJS    := $(LIB_SRCS:$(LIB)/%.c=$(BUILD)/pic/%.o)

ALL_BINS += $(SO_LIB) $(BUILD)/$(EVL_SONAME) $(BUILD)/libevloop.so

$(BUILD)/pic/%.o: $(LIB)/%.c $(LIB_HDRS) | deps-build
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -fPIC -c $< -o $@

# -z defs: an undefined symbol fails here, not in a user's link.
$(SO_LIB): $(PIC_OBJS) $(EVL_MAP)
	@test -n "$(EVL_MAJOR)" -a -n "$(EVL_MINOR)" -a -n "$(EVL_PATCH)" || \
	  { echo "install.mk: no EVL_VERSION_MAJOR/MINOR/PATCH in $(LIB)/evloop.h" >&2; exit 1; }
	$(CC) -shared -Wl,-soname,$(EVL_SONAME) -Wl,--version-script=$(EVL_MAP) \
	  -Wl,-z,defs -Wl,-z,relro -Wl,-z,now -o $@ $(PIC_OBJS)
$(BUILD)/$(EVL_SONAME) $(BUILD)/libevloop.so: $(SO_LIB)
	ln -sf $(notdir $<) $@

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PCDIR      ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=

.PHONY: install uninstall
install: $(REL_LIB) $(SO_LIB)
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR)
	install -m 644 $(LIB)/evloop.h $(DESTDIR)$(INCLUDEDIR)/evloop.h
	install -m 644 $(REL_LIB) $(DESTDIR)$(LIBDIR)/libevloop.a
	install -m 755 $(SO_LIB) $(DESTDIR)$(LIBDIR)/libevloop.so.$(EVL_VERSION)
	ln -sf libevloop.so.$(EVL_VERSION) $(DESTDIR)$(LIBDIR)/$(EVL_SONAME)
	ln -sf $(EVL_SONAME) $(DESTDIR)$(LIBDIR)/libevloop.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(EVL_VERSION)|' \
	    lib/evloop.pc.in >$(DESTDIR)$(PCDIR)/evloop.pc
	chmod 644 $(DESTDIR)$(PCDIR)/evloop.pc

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/evloop.h $(DESTDIR)$(LIBDIR)/libevloop.a \
	  $(DESTDIR)$(LIBDIR)/libevloop.so.$(EVL_VERSION) $(DESTDIR)$(LIBDIR)/$(EVL_SONAME) \
	  $(DESTDIR)$(LIBDIR)/libevloop.so $(DESTDIR)$(PCDIR)/evloop.pc
