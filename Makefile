# rekey — top-level build.  `make` builds the daemon, the CLI and the
# connector plugins; `make demo` and `make check` are the two commands the
# README starts with.  Libraries come from pkg-config; scripts/install-deps.sh
# installs the Debian packages when one is missing.

CC      ?= cc
PKGS    := libuv libxml-2.0 sqlite3 zlib libcrypto jansson inih
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -fPIC $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -Iconnectors
ifdef WERROR
CFLAGS  += -Werror
endif
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldl -lpthread -lm

SAN ?=
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

AGENT_MAINS := agent/rekeyd.c agent/rekeyctl.c
AGENT_SRCS  := $(filter-out $(AGENT_MAINS),$(wildcard agent/*.c))
AGENT_OBJS  := $(AGENT_SRCS:.c=.o)
AGENT_LIB   := agent/librekey.a

CONNECTOR_DIRS := $(patsubst %/,%,$(dir $(wildcard connectors/*/*.c)))
CONNECTORS     := $(sort $(foreach d,$(CONNECTOR_DIRS),$(d)/$(notdir $(d)).so))

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:.c=)

PROGRAMS := agent/rekeyd agent/rekeyctl

.PHONY: all deps demo check check-unit check-system check-asan clean
all: $(PROGRAMS) $(CONNECTORS) $(UNIT_BINS)

deps:
	@sh scripts/install-deps.sh

agent/%.o: agent/%.c $(wildcard agent/*.h) connectors/rekey_connector.h
	$(CC) $(CFLAGS) -c -o $@ $<

$(AGENT_LIB): $(AGENT_OBJS)
	rm -f $@ && ar rcs $@ $^

agent/rekeyd: agent/rekeyd.o $(AGENT_LIB)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)

agent/rekeyctl: agent/rekeyctl.o $(AGENT_LIB)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)

# One folder per connector, each building one shared object named after it.
# A connector sees only the ABI header; connectors/NAME/flags.mk may set
# CONNECTOR_CFLAGS_NAME and CONNECTOR_LIBS_NAME.
-include $(wildcard connectors/*/flags.mk)
define connector_rule
connectors/$(1)/$(1).so: $$(wildcard connectors/$(1)/*.c) $$(wildcard connectors/$(1)/*.h) connectors/rekey_connector.h
	$$(CC) $$(CFLAGS) $$(CONNECTOR_CFLAGS_$(1)) -shared -o $$@ $$(wildcard connectors/$(1)/*.c) \
	  $$(LDFLAGS) $$(CONNECTOR_LIBS_$(1))
endef
$(foreach d,$(CONNECTOR_DIRS),$(eval $(call connector_rule,$(notdir $(d)))))

tests/unit/test_%: tests/unit/test_%.c $(AGENT_LIB) $(wildcard tests/unit/*.h)
	$(CC) $(CFLAGS) -Iagent $(shell pkg-config --cflags cmocka) -o $@ $< $(AGENT_LIB) \
	  $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

check: deps
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/run_all.py

check-asan: deps
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory SAN=1 all
	@ASAN_OPTIONS=detect_leaks=1 /usr/bin/python3 tests/run_all.py

clean:
	rm -f agent/*.o $(AGENT_LIB) $(PROGRAMS) $(CONNECTORS) $(UNIT_BINS)
	rm -rf build

# test plugins (connector host tests)
# Small shared objects that break the connector ABI on purpose (wrong major
# version, no entry symbol, short descriptor, ...) plus one well-formed
# plugin steered by its records; tests/unit/test_connector.c loads them from
# tests/unit/plugins.  tests/unit/pgtest_connector needs a running
# PostgreSQL (REKEY_TEST_PG_CONNINFO), so it is not named test_*: the unit
# run skips it and tests/system/test_postgres_connector.py runs it.
TEST_PLUGINS := $(patsubst %.c,%.so,$(wildcard tests/unit/plugins/*.c))
PG_UNIT_BIN  := tests/unit/pgtest_connector

all: $(TEST_PLUGINS) $(PG_UNIT_BIN)

tests/unit/plugins/%.so: tests/unit/plugins/%.c connectors/rekey_connector.h
	$(CC) $(CFLAGS) -shared -o $@ $< $(LDFLAGS)

$(PG_UNIT_BIN): tests/unit/pgtest_connector.c $(AGENT_LIB) $(wildcard tests/unit/*.h)
	$(CC) $(CFLAGS) -Iagent $(shell pkg-config --cflags cmocka libpq) -o $@ $< $(AGENT_LIB) \
	  $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka libpq)

.PHONY: clean-test-plugins
clean: clean-test-plugins
clean-test-plugins:
	rm -f $(TEST_PLUGINS) $(PG_UNIT_BIN)
