# herald — run `make help` for the targets.
GO      ?= go
PKGS    ?= ./...
BIN     ?= bin/herald
FUZZTIME ?= 60s

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Start herald dev: embedded Redis, SMTP and Slack capture into ./outbox, examples loaded
	$(GO) run ./cmd/herald dev

.PHONY: build
build: ## Build the herald binary into bin/
	$(GO) build -o $(BIN) ./cmd/herald

.PHONY: deps
deps: ## Install the test peers (redis-server, postfix for smtp-sink, chromium with Noto CJK and Thai fonts, systemd-analyze, prometheus) when missing
	@need=""; \
	command -v redis-server >/dev/null || need="$$need redis-server"; \
	test -x /usr/sbin/smtp-sink || need="$$need postfix"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	fc-list -q 'Noto Sans CJK JP' 2>/dev/null || need="$$need fontconfig fonts-noto-cjk"; \
	fc-list -q 'Noto Sans Thai' 2>/dev/null || need="$$need fontconfig fonts-noto-core"; \
	command -v systemd-analyze >/dev/null || need="$$need systemd"; \
	command -v prometheus >/dev/null || need="$$need prometheus"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  if command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$need >/dev/null && \
	    { $$sudo service prometheus stop >/dev/null 2>&1 || true; }; \
	  else \
	    echo "missing:$$need — install them with your package manager (Debian: apt-get install -y$$need)"; exit 1; \
	  fi; \
	fi

.PHONY: test
test: deps ## Run every test with -race against private redis-server processes
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

.PHONY: faults
faults: deps ## Fault suite: kill -9, Redis restart, SMTP/Slack outages, lost follow-ups, SIGTERM (one line per scenario)
	@out=$$(mktemp); $(GO) test -count=1 -v -timeout 20m -parallel 4 -run 'TestFaults' ./faults/ >$$out 2>&1; rc=$$?; \
	  [ $$rc = 0 ] || grep -vE '^=== (RUN|PAUSE|CONT)' $$out | tail -150; \
	  echo "scenario, asked, delivered, failed-permanent, lost, duplicates, seconds"; grep '^FAULTS' $$out | sed 's/^FAULTS //'; rm -f $$out; exit $$rc

.PHONY: cluster-test
cluster-test: deps ## The delivery and kill -9 checks on a 3-master Redis Cluster (redis-server + redis-cli)
	@out=$$(mktemp); $(GO) test -count=1 -v -timeout 15m -tags cluster -run 'TestCluster' ./faults/ >$$out 2>&1; rc=$$?; \
	  [ $$rc = 0 ] || grep -vE '^=== (RUN|PAUSE|CONT)' $$out | tail -150; \
	  grep '^FAULTS' $$out | sed 's/^FAULTS //'; rm -f $$out; exit $$rc

# Every fuzz target as package:Target.
FUZZ_TARGETS = ./internal/wire:FuzzDecode ./httpapi:FuzzBodies ./channels/email:FuzzParseURL \
	./templates:FuzzRender ./templates:FuzzLoad ./templates:FuzzLayoutPlan ./workflows:FuzzParse ./preferences:FuzzVerify \
	./ack:FuzzSlackInteraction ./ack:FuzzInboundEmail

.PHONY: fuzz
fuzz: deps ## Explore each fuzz target for FUZZTIME (default 60s); commit what it finds as a seed. Not in CI
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

BENCH ?= .
PROFILE ?=

.PHONY: bench
bench: deps ## Benchmarks: herald vs bare asynq on one fresh redis-server (BENCH=regexp picks some; PROFILE=1 writes bench/cpu.pprof of MessagePath)
	HERALD_BENCH_PROFILE=$(PROFILE) $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 30m ./bench/

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)
