# rekey — top-level build.  `make` builds the daemon, the CLI and the
# connector plugins; `make demo` and `make check` are the two commands the
# README starts with.  Libraries come from pkg-config; scripts/install-deps.sh
# installs the Debian packages when one is missing.

CC      ?= cc
PKGS    := libuv libxml-2.0 sqlite3 zlib libdeflate libcrypto jansson inih libcurl libmicrohttpd
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

.PHONY: all deps demo check check-unit check-system check-asan check-valgrind check-crash clean
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

# the CLI's formatting test includes rekeyctl.c itself
tests/unit/test_cli_format: agent/rekeyctl.c

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

check: deps tests/browser/node_modules/.installed
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/run_all.py

# The browser tests' npm packages (playwright-core, axe-core), pinned by
# tests/browser/package-lock.json; installed again when the lock changes.
# tests/system/test_browser.py drives Debian's chromium with them.
tests/browser/node_modules/.installed: tests/browser/package-lock.json tests/browser/package.json
	npm ci --prefix tests/browser --no-audit --no-fund
	@touch $@

# Sanitizer reports go to build/san/ (absolute path: the tests run the
# binaries from other folders), so a report from a process whose exit status
# a test does not look at (a daemon stopped by SIGTERM, a CLI run for its
# output) still fails the target; the reports are printed after the summary.
SAN_LOG := $(CURDIR)/build/san
check-asan: deps tests/browser/node_modules/.installed
	@$(MAKE) --no-print-directory clean
	@$(MAKE) --no-print-directory SAN=1 all
	@rm -rf $(SAN_LOG) && mkdir -p $(SAN_LOG)
	@rc=0; ASAN_OPTIONS=detect_leaks=1:log_path=$(SAN_LOG)/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_LOG)/ubsan \
	  /usr/bin/python3 tests/run_all.py || rc=$$?; \
	if [ -n "$$(ls -A $(SAN_LOG))" ]; then \
	  for f in $(SAN_LOG)/*; do echo "== $$f"; cat "$$f"; done; \
	  echo "check-asan: $$(ls $(SAN_LOG) | wc -l) sanitizer report(s) in build/san/"; rc=1; \
	fi; exit $$rc

# Unit tests under valgrind: any memory error or definite leak fails the test
# (the summary line counts it as failed).
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full \
            --errors-for-leak-kinds=definite --show-leak-kinds=definite
check-valgrind:
	@sh scripts/install-deps.sh valgrind
	@$(MAKE) --no-print-directory all
	@REKEY_UNIT_WRAPPER="$(VALGRIND)" /usr/bin/python3 tests/run_all.py --unit-only

# Crash series at full size (make check runs a small one): SIGKILL at random
# moments, restart, and check nothing was lost or delivered twice.
CRASH_FILES ?= 2000
CRASH_KILLS ?= 100
check-crash: deps
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/crash/crash_series.py --files $(CRASH_FILES) --kills $(CRASH_KILLS)

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

# fuzz harnesses
# tests/fuzz/fuzz_NAME.c are libFuzzer harnesses for the code that sees
# outside input.  `make all` builds each one with a plain main
# (-DRK_FUZZ_REPLAY_MAIN) as build/fuzz/replay_NAME, linked against
# librekey.a with the programs' flags (so `make SAN=1` sanitizes them too);
# tests/system/test_fuzz_replay.py replays tests/fuzz/corpus/NAME and
# tests/data through them.  `make fuzz` builds the real fuzzers with clang
# into build/fuzz/fuzz_NAME and runs each for FUZZ_SECONDS on a copy of its
# corpus (build/fuzz/corpus-NAME), so new inputs never touch the tree.
# See tests/fuzz/README.md.
FUZZ_NAMES    := xmldoc gunzip job map httpinbox jwe fitconnect
FUZZ_REPLAYS  := $(addprefix build/fuzz/replay_,$(FUZZ_NAMES))
FUZZ_SECONDS  ?= 60
FUZZ_CC       ?= clang
FUZZ_CFLAGS   := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                 -std=c11 -D_GNU_SOURCE -Iagent -Iconnectors \
                 $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Agent sources and libraries each libFuzzer binary needs (the harness
# authors' notes); the replay binaries take librekey.a instead.
FUZZ_SRCS_xmldoc := agent/xmldoc.c agent/record.c agent/job.c agent/util.c
FUZZ_LIBS_xmldoc := $(shell pkg-config --libs libxml-2.0 libcrypto zlib libdeflate 2>/dev/null) -lpthread
FUZZ_SRCS_gunzip := agent/util.c
FUZZ_LIBS_gunzip := $(shell pkg-config --libs zlib libdeflate libcrypto 2>/dev/null)
FUZZ_SRCS_job    := agent/job.c agent/xmldoc.c agent/record.c agent/util.c
FUZZ_LIBS_job    := $(shell pkg-config --libs libxml-2.0 libcrypto zlib libdeflate jansson 2>/dev/null) -lpthread -lm
FUZZ_SRCS_map    := agent/map.c agent/xmlarena.c agent/rules.c agent/job.c agent/xmldoc.c agent/record.c agent/util.c
FUZZ_LIBS_map    := $(FUZZ_LIBS_job)
FUZZ_SRCS_httpinbox  := agent/inbox_parse.c
FUZZ_LIBS_httpinbox  := $(shell pkg-config --libs jansson 2>/dev/null)
FUZZ_SRCS_jwe        := agent/jose.c agent/util.c
FUZZ_LIBS_jwe        := $(shell pkg-config --libs libcrypto zlib libdeflate jansson 2>/dev/null)
FUZZ_SRCS_fitconnect := agent/inbox_parse.c
FUZZ_LIBS_fitconnect := $(FUZZ_LIBS_httpinbox)

.PHONY: fuzz fuzz-build
all: $(FUZZ_REPLAYS)

build/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.h $(AGENT_LIB) $(wildcard agent/*.h)
	@mkdir -p build/fuzz
	$(CC) $(CFLAGS) -DRK_FUZZ_REPLAY_MAIN -Iagent -o $@ $< $(AGENT_LIB) $(LDFLAGS) $(LDLIBS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.h $(wildcard agent/*.c) $(wildcard agent/*.h)
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
	  echo "make fuzz: '$(FUZZ_CC)' not found; install clang (apt-get install clang) or set FUZZ_CC" >&2; \
	  exit 1; }
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRCS_$*) $(FUZZ_LIBS_$*)

fuzz-build: $(addprefix build/fuzz/fuzz_,$(FUZZ_NAMES))

fuzz: fuzz-build
	@set -e; for n in $(FUZZ_NAMES); do \
	  rm -rf build/fuzz/corpus-$$n && mkdir -p build/fuzz/corpus-$$n build/fuzz/crashes-$$n; \
	  cp tests/fuzz/corpus/$$n/* build/fuzz/corpus-$$n/; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s (corpus build/fuzz/corpus-$$n)"; \
	  build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/crashes-$$n/ build/fuzz/corpus-$$n \
	    || { echo "fuzz: $$n found a problem; the input is in build/fuzz/crashes-$$n/" >&2; exit 1; }; \
	done

# jose test tool
# tests/unit/jose_tool drives agent/jose.c from the command line (decrypt,
# sign a SET, verify, export the public JWK) for
# tests/system/test_jose_interop.py, which checks it against jwcrypto.  It is
# not named test_*, so the unit run does not start it.
JOSE_TOOL := tests/unit/jose_tool

all: $(JOSE_TOOL)

$(JOSE_TOOL): tests/unit/jose_tool.c $(AGENT_LIB) agent/jose.h agent/util.h
	$(CC) $(CFLAGS) -Iagent -o $@ $< $(AGENT_LIB) $(LDFLAGS) $(LDLIBS)

.PHONY: clean-jose-tool
clean: clean-jose-tool
clean-jose-tool:
	rm -f $(JOSE_TOOL)

# install
# `make install` (PREFIX=/usr/local, DESTDIR= for packaging) puts rekey
# where a Debian service expects it; `make uninstall` removes exactly those
# files and then the folders of rekey's own that are left empty.
# docs/operations.md ("Running as a service") lists the files; the unit and
# the example settings are copied with their /usr paths rewritten to
# PREFIX.  tests/system/test_install.py checks the list and the modes.
# Also here: the link flags of agent/notify.c (sd_notify, libsystemd), and
# jansson for the fuzz harnesses that compile agent/util.c by hand (its
# JSON log lines).
CFLAGS  += $(shell pkg-config --cflags libsystemd 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs libsystemd 2>/dev/null)
FUZZ_LIBS_xmldoc += $(shell pkg-config --libs jansson 2>/dev/null)
FUZZ_LIBS_gunzip += $(shell pkg-config --libs jansson 2>/dev/null)

PREFIX  ?= /usr/local
DESTDIR ?=
ifeq ($(PREFIX),/usr)
UNITDIR ?= /lib/systemd/system
else
UNITDIR ?= $(PREFIX)/lib/systemd/system
endif
INSTALL ?= install
# the template connector is an example for connector authors, not a plugin
INSTALL_CONNECTORS := $(filter-out connectors/template/%,$(CONNECTORS))
INSTALL_SCHEMAS    := $(shell find schemas -type f \( -name '*.xsd' -o -name '*.gc' \) | sort)
INSTALL_JOBS       := $(wildcard jobs/*.xml)
INSTALL_SED        := sed -e 's|/usr/sbin/rekeyd|$(PREFIX)/sbin/rekeyd|g' \
                          -e 's|/usr/lib/rekey/|$(PREFIX)/lib/rekey/|g' \
                          -e 's|/usr/share/rekey/|$(PREFIX)/share/rekey/|g'
IROOT := $(DESTDIR)$(PREFIX)
# every file install writes, for uninstall
INSTALLED := $(IROOT)/sbin/rekeyd $(IROOT)/bin/rekeyctl \
  $(foreach so,$(INSTALL_CONNECTORS),$(IROOT)/lib/rekey/$(dir $(so))$(notdir $(so))) \
  $(IROOT)/include/rekey/rekey_connector.h \
  $(addprefix $(IROOT)/share/rekey/,$(INSTALL_SCHEMAS) $(INSTALL_JOBS)) \
  $(IROOT)/share/man/man8/rekeyd.8 $(IROOT)/share/man/man1/rekeyctl.1 \
  $(DESTDIR)$(UNITDIR)/rekeyd.service $(IROOT)/share/doc/rekey/rekeyd.ini.example

.PHONY: install uninstall
install: $(PROGRAMS) $(INSTALL_CONNECTORS)
	$(INSTALL) -D -m 0755 agent/rekeyd $(IROOT)/sbin/rekeyd
	$(INSTALL) -D -m 0755 agent/rekeyctl $(IROOT)/bin/rekeyctl
	@set -e; for so in $(INSTALL_CONNECTORS); do \
	  echo "$(INSTALL) -D -m 0644 $$so $(IROOT)/lib/rekey/$$so"; \
	  $(INSTALL) -D -m 0644 $$so $(IROOT)/lib/rekey/$$so; \
	done
	$(INSTALL) -D -m 0644 connectors/rekey_connector.h $(IROOT)/include/rekey/rekey_connector.h
	@set -e; for f in $(INSTALL_SCHEMAS) $(INSTALL_JOBS); do \
	  $(INSTALL) -D -m 0644 $$f $(IROOT)/share/rekey/$$f; \
	done
	@echo "$(INSTALL) -m 0644 schemas and jobs -> $(IROOT)/share/rekey/"
	$(INSTALL) -D -m 0644 man/rekeyd.8 $(IROOT)/share/man/man8/rekeyd.8
	$(INSTALL) -D -m 0644 man/rekeyctl.1 $(IROOT)/share/man/man1/rekeyctl.1
	$(INSTALL) -d -m 0755 $(DESTDIR)$(UNITDIR) $(IROOT)/share/doc/rekey
	$(INSTALL_SED) dist/rekeyd.service > $(DESTDIR)$(UNITDIR)/rekeyd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/rekeyd.service
	$(INSTALL_SED) dist/rekeyd.ini.example > $(IROOT)/share/doc/rekey/rekeyd.ini.example
	chmod 0644 $(IROOT)/share/doc/rekey/rekeyd.ini.example

uninstall:
	rm -f $(INSTALLED)
	@for d in $(IROOT)/lib/rekey $(IROOT)/share/rekey $(IROOT)/include/rekey \
	          $(IROOT)/share/doc/rekey; do \
	  if [ -d "$$d" ]; then find "$$d" -depth -type d -empty -delete; fi; \
	done

# benchmark
# `make bench` measures rekey against the floor of its work (xmllint
# --schema over the same documents) in one run on one generated corpus:
# the durable backlog (rekeyd --once), latency at a steady offered rate,
# peak RSS idle and under load, and intake against a queue of BENCH_QUEUE
# finished jobs (built once, cached in build/bench/cache/).  Prints one
# table and writes build/bench/bench-<UTC>.json and build/bench/latest.json.
# Timings are reported, never asserted.  See docs/performance.md.
BENCH_N       ?= 20000
BENCH_RATE    ?= 1000
BENCH_SECONDS ?= 20
BENCH_QUEUE   ?= 1000000
BENCH_INTAKE  ?= 5000
BENCH_ARGS    ?=

.PHONY: bench
bench: deps
	@if ldd agent/rekeyd 2>/dev/null | grep -q -e libasan -e libubsan; then \
	  echo "bench: agent/rekeyd is a sanitizer build (make check-asan); rebuilding"; \
	  $(MAKE) --no-print-directory clean; fi
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/bench/bench.py --n $(BENCH_N) --rate $(BENCH_RATE) \
	  --seconds $(BENCH_SECONDS) --queue $(BENCH_QUEUE) --intake $(BENCH_INTAKE) $(BENCH_ARGS)
