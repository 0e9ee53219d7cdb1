# baton — build, test, demo.
#
# Configuration (override on the command line):
#   SANITIZE=1   build with ASan + UBSan into build-san/ (tests use it too)
#   RELEASE=1    optimised build without debug assertions into build-rel/
#   CC           compiler (default cc)

CC      ?= cc
PKGS    := libzmq msgpack lmdb libmicrohttpd libcurl jansson libcrypto libpq
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
OPT     := -O2 -g

ifeq ($(SANITIZE),1)
BUILD   := build-san
OPT     := -O1 -g -fno-omit-frame-pointer
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
else ifeq ($(RELEASE),1)
BUILD   := build-rel
OPT     := -O2 -DNDEBUG
else
BUILD   := build
endif

# Say clearly which library is missing instead of failing on a header.
# The README's two commands (make demo, make test) install what is missing
# first and build in a second make that sees the new libraries, so they are
# spared this check; every other target keeps it.
NOCHECK_GOALS := clean help deps demo test sandbox deb
PKG_CHECK := $(if $(MAKECMDGOALS),$(filter-out $(NOCHECK_GOALS),$(MAKECMDGOALS)),all)
PKG_MISSING := $(strip $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) && echo y),,$(p))))
ifneq ($(PKG_MISSING),)
ifneq ($(PKG_CHECK),)
$(error missing libraries (pkg-config): $(PKG_MISSING) — run scripts/install-deps)
endif
endif

CFLAGS  += $(CSTD) $(WARN) $(OPT) $(SAN) -MMD -MP -Icommon -Istate $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(SAN)
# libunistring ships no pkg-config file on Debian 12.
ifeq ($(wildcard /usr/include/uninorm.h),)
ifneq ($(PKG_CHECK),)
$(error missing library: libunistring (uninorm.h) — run scripts/install-deps)
endif
endif
# libpq: its headers only; state/pg.c loads it when a process first connects
# (a process on LMDB alone never maps it and what it pulls in).
LDLIBS  += $(shell pkg-config --libs $(filter-out libpq,$(PKGS)) 2>/dev/null) -lunistring -lm -ldl -lpthread

BIN     := $(BUILD)/bin

COMMON_SRC := \
	common/xalloc.c \
	common/clock.c \
	common/lathist.c \
	common/log.c \
	common/config.c \
	common/confcheck.c \
	common/envelope.c \
	common/mpscan.c \
	common/zmqx.c \
	common/zap.c \
	common/kv.c \
	common/httpc.c \
	common/form.c \
	common/form_encode.c \
	common/media.c \
	common/mediacheck.c \
	common/mediafetch.c \
	common/twsig.c \
	common/utf8.c \
	common/backoff.c \
	common/hours.c \
	common/worker.c \
	common/proc.c \
	common/capture.c \
	common/metrics.c \
	common/metrics_merge.c \
	common/webhook.c \
	common/events.c \
	common/auth.c

# The state library: the store (LMDB schema and records). The router writes
# it; batonctl and the console read it. Linked as a library, never as
# another process's objects.
STATE_SRC := \
	state/store.c \
	state/convkey.c \
	state/convview.c \
	state/convlist.c \
	state/journal.c \
	state/pg.c \
	state/mirror.c \
	state/access.c

INGRESS_SRC := \
	ingress/metrics_http.c \
	ingress/slow.c \
	ingress/server.c

ROUTER_SRC := \
	router/rules.c \
	router/dispatch.c \
	router/router.c \
	router/ctx.c \
	router/batch.c \
	router/evtable.c \
	router/stats.c \
	router/turns.c \
	router/handoff.c \
	router/outbox.c \
	router/voice.c \
	router/jobs.c \
	router/purge.c \
	router/room.c \
	router/lead.c

AI_SRC := \
	ai-worker/escalate.c \
	ai-worker/llm.c \
	ai-worker/transcribe.c \
	ai-worker/aimedia.c \
	ai-worker/aiwork.c

EGRESS_SRC := \
	egress/twilio.c \
	egress/sender.c

CTL_SRC := \
	ctl/ctl.c \
	ctl/since.c \
	ctl/show.c \
	ctl/list.c \
	ctl/stats.c \
	ctl/export.c \
	ctl/admin.c

FLEX_SRC := \
	flex-worker/flexapi.c \
	flex-worker/flexmedia.c \
	flex-worker/pipeline.c

CONSOLE_SRC := \
	console/reader.c \
	console/reply.c \
	console/labels.c \
	console/reports.c \
	console/command.c \
	console/mediaproxy.c \
	console/api.c \
	console/web.c

REPLAY_SRC := \
	replay/replay.c

PROGS := ingress router ai-worker egress

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

COMMON_OBJ  := $(call obj,$(COMMON_SRC))
STATE_OBJ   := $(call obj,$(STATE_SRC))
INGRESS_OBJ := $(call obj,$(INGRESS_SRC))
ROUTER_OBJ  := $(call obj,$(ROUTER_SRC))
AI_OBJ      := $(call obj,$(AI_SRC))
EGRESS_OBJ  := $(call obj,$(EGRESS_SRC))
FLEX_OBJ    := $(call obj,$(FLEX_SRC))
CTL_OBJ     := $(call obj,$(CTL_SRC))
REPLAY_OBJ  := $(call obj,$(REPLAY_SRC))
CONSOLE_OBJ := $(call obj,$(CONSOLE_SRC))
LIBCOMMON   := $(BUILD)/libcommon.a
LIBSTATE    := $(BUILD)/libstate.a

BINARIES := $(BIN)/baton-ingress $(BIN)/baton-router $(BIN)/baton-ai-worker $(BIN)/baton-egress \
            $(BIN)/baton-flex-worker $(BIN)/batonctl $(BIN)/baton-replay $(BIN)/baton-console

UNIT_TESTS := convlist envelope config form twsig utf8 escalate llm store dispatch twilio webhook backoff rules flexapi hours lathist capture ctl metrics metrics_merge machine media transcribe worker
UNIT_BINS  := $(patsubst %,$(BUILD)/tests/test_%,$(UNIT_TESTS))

.PHONY: all check-layers test test-run unit integration demo sandbox install deb run clean deps help fuzz chaos test-durations
all: $(BINARIES)

help:
	@echo "make demo       install what is missing, build, play the clinic conversation (about 1 min)"
	@echo "make test       install what is missing, build, unit + integration tests (about 6 min)"
	@echo "make sandbox    baton with the fakes and a page to chat with it at http://127.0.0.1:8765/"
	@echo "make run        baton against your real Twilio and LLM (README \"Going live\")"
	@echo "make all        build every binary (into build/, build-san/ with SANITIZE=1,"
	@echo "                build-rel/ with RELEASE=1)"
	@echo "make unit       build the unit tests only"
	@echo "make chaos      the long chaos test: 2,000 messages while processes are killed, with and"
	@echo "                without reconciliation (about 20 min)"
	@echo "make fuzz       libFuzzer over every parser, FUZZ_SECONDS each (60)"
	@echo "make bench      the performance figures of README \"Performance\" (about 3 min)"
	@echo "make install    install binaries, units, config example (PREFIX=/usr/local DESTDIR=)"
	@echo "make deb        build a Debian package into build/deb/"
	@echo "make deps       install the Debian packages baton needs"
	@echo "make clean      remove every build directory"
	@echo "options: SANITIZE=1 (ASan + UBSan), RELEASE=1 (optimised, no asserts), V=1 (commands)"

deps:
	scripts/install-deps

# V=1 shows the full commands.
Q := $(if $(V),,@)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBSTATE): $(STATE_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# The operator console (baton-console, console/) reads LMDB through the
# state library (read-only) and serves console/page/* embedded as C arrays
# (vendor/: uPlot for the reports' charts, see vendor/VERSION).
CONSOLE_ASSETS := console/page/index.html console/page/console.css console/page/console.js \
                  console/page/vendor/uPlot.iife.min.js console/page/vendor/uPlot.min.css \
                  console/page/vendor/uPlot.LICENSE
CONSOLE_OBJ += $(BUILD)/gen/console_assets.o
%/gen/console_assets.c: scripts/gen-console-assets $(CONSOLE_ASSETS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  GEN     $@")
	$(Q)python3 scripts/gen-console-assets $@ $(CONSOLE_ASSETS)
$(BUILD)/gen/console_assets.o: $(BUILD)/gen/console_assets.c
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -Iconsole -c -o $@ $<

$(BIN)/baton-ingress: $(BUILD)/ingress/main.o $(INGRESS_OBJ) $(LIBSTATE) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/baton-router: $(BUILD)/router/main.o $(ROUTER_OBJ) $(LIBSTATE) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/baton-ai-worker: $(BUILD)/ai-worker/main.o $(AI_OBJ) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/baton-egress: $(BUILD)/egress/main.o $(EGRESS_OBJ) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/baton-flex-worker: $(BUILD)/flex-worker/main.o $(FLEX_OBJ) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# batonctl reads LMDB through the state library (read-only).
$(BIN)/batonctl: $(BUILD)/ctl/main.o $(CTL_OBJ) $(LIBSTATE) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# baton-replay converts records with the webhook and event code ingress uses
# (common/webhook.c, common/events.c) for --to router.
$(BIN)/baton-replay: $(BUILD)/replay/main.o $(REPLAY_OBJ) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/baton-console: $(BUILD)/console/main.o $(CONSOLE_OBJ) $(LIBSTATE) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread

# Unit tests link the module under test, the libraries it stands on and cmocka:
# never another process's objects it does not test.
UT_LIBS := $(LIBSTATE) $(LIBCOMMON)
$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(UT_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(UT_LIBS) $(LDLIBS) -lcmocka

$(BUILD)/tests/unit/%.o: CFLAGS += -Iingress -Irouter -Iai-worker -Iegress -Iflex-worker -Ictl
$(BUILD)/tests/test_escalate: $(call obj,ai-worker/escalate.c)
$(BUILD)/tests/test_llm: $(call obj,ai-worker/llm.c)
$(BUILD)/tests/test_transcribe: $(call obj,ai-worker/transcribe.c)
$(BUILD)/tests/test_dispatch: $(call obj,router/dispatch.c)
$(BUILD)/tests/test_rules: $(call obj,router/rules.c)
$(BUILD)/tests/test_twilio: $(call obj,egress/twilio.c)
$(BUILD)/tests/test_flexapi: $(call obj,flex-worker/flexapi.c)
$(BUILD)/tests/test_metrics: $(call obj,ingress/metrics_http.c)
$(BUILD)/tests/test_ctl: $(call obj,ctl/since.c)
# The router's state machine: every module but the loop (router.c) and main.c.
$(BUILD)/tests/test_machine: $(call obj,$(filter-out router/router.c,$(ROUTER_SRC)))

unit: $(UNIT_BINS)

# Test tools the integration tests run.
TOOLS := $(BUILD)/tests/zsend
$(BUILD)/tests/zsend: $(BUILD)/tests/tools/zsend.o
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Tools of make bench (several lines may add prerequisites to bench-tools).
.PHONY: bench-tools bench
# make bench: release build, every figure of bench/run.py (README "Performance").
bench:
	@scripts/install-deps --bench
	@$(MAKE) --no-print-directory RELEASE=1 -j2 all bench-tools
	@python3 bench/run.py $(BENCH_ARGS)
bench-tools: $(BUILD)/tools/preload
$(BUILD)/tools/preload: $(BUILD)/tests/tools/preload.o $(LIBSTATE) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# benchfake: the fast fake LLM + Twilio Messages API of make bench.
bench-tools: $(BUILD)/tools/benchfake
$(BUILD)/tools/benchfake: $(BUILD)/tests/tools/benchfake.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread
# streamgen: synthetic capture files (Zipf conversations, escalations, hand-backs) for baton-replay.
bench-tools: $(BUILD)/tools/streamgen
TOOLS += $(BUILD)/tools/streamgen
$(BUILD)/tools/streamgen: $(BUILD)/tests/tools/streamgen.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# One line at the end: "N passed, N failed" (unit + integration).
# make test installs what is missing, then builds and runs in a second make
# (its library flags are read when it starts).
test:
	@scripts/install-deps
	@$(MAKE) --no-print-directory test-run
test-run: all $(UNIT_BINS) $(TOOLS) check-layers
	@python3 tests/run.py --build $(BUILD) $(UNIT_BINS)
# The order a fresh clone's first run starts its tests in (longest first):
# refresh after adding slow tests, from a normal build's last full run.
test-durations:
	@python3 -c 'import json,sys; t=json.load(open("build/test-times.json")); \
	json.dump({k: round(v, 1) for k, v in sorted(t.items())}, sys.stdout, indent=0); print()' \
	> tests/durations.json

demo:
	@scripts/demo

# The router's modules never call into its loop (router/core.h).
check-layers:
	@scripts/check-layers

# make install PREFIX=/usr/local DESTDIR=: binaries, units, config example, docs.
PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
install: all
	@scripts/install-tree $(BIN) "$(DESTDIR)" $(PREFIX) $(SYSCONFDIR) $(UNITDIR)

# make deb: build/deb/baton_VERSION_ARCH.deb from the release build, lintian-checked.
deb:
	@scripts/install-deps >/dev/null
	@$(MAKE) --no-print-directory RELEASE=1 -j2 all
	@scripts/mkdeb build-rel/bin

# The sandbox you can talk to: the fakes, the five processes, and a page on
# 127.0.0.1 (SANDBOX_ARGS="--port N"). Ctrl-C stops everything.
sandbox:
	@scripts/install-deps >/dev/null
	@$(MAKE) --no-print-directory -s all
	@python3 scripts/sandbox.py $(SANDBOX_ARGS)

# The long chaos run (the CI-sized one is part of make test).
chaos: all $(TOOLS)
	@BATON_BIN=$(CURDIR)/$(BIN) python3 tests/chaos/chaos.py --conversations 200 --messages 2000

run: all
	@scripts/run

# libFuzzer targets (clang): every module built again with the fuzzer's
# coverage and ASan + UBSan into build-fuzz/. FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := envelope webhook upstream media transcribe
FUZZ_DIR     := build-fuzz
FUZZ_CFLAGS  := $(CSTD) -g -O1 -fsanitize=fuzzer-no-link,address,undefined -Icommon -Istate \
                -Iingress -Irouter -Iai-worker -Iegress -Iflex-worker \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_SRC     := $(COMMON_SRC) $(INGRESS_SRC) $(AI_SRC) $(EGRESS_SRC) $(FLEX_SRC)
FUZZ_OBJ     := $(patsubst %.c,$(FUZZ_DIR)/%.o,$(FUZZ_SRC))
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CLANG   $@")
	$(Q)clang $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	@$(if $(V),,echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t; \
		echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
		$(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_DIR)/crash-$$t- \
			$(FUZZ_DIR)/corpus/$$t tests/fuzz/seeds/$$t 2>$(FUZZ_DIR)/fuzz_$$t.log || \
			{ tail -40 $(FUZZ_DIR)/fuzz_$$t.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::peak_rss" $(FUZZ_DIR)/fuzz_$$t.log; \
	done

clean:
	rm -rf build build-san build-rel build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Unit test objects are made through a pattern rule: keep them. (A bare
# .SECONDARY: would also stop make from building an object newly added
# to a library whose archive looks up to date.)
.SECONDARY: $(patsubst %,$(BUILD)/tests/unit/test_%.o,$(UNIT_TESTS))
