# herald — run `make help` for the targets.
GO      ?= go
PKGS    ?= ./...
BIN     ?= bin/herald
FUZZTIME ?= 10s

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
deps: ## Install the test peers (redis-server; postfix for smtp-sink; chromium) when missing
	@need=""; \
	command -v redis-server >/dev/null || need="$$need redis-server"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  if command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	  else \
	    echo "missing:$$need — install them with your package manager (Debian: apt-get install -y$$need)"; exit 1; \
	  fi; \
	fi

.PHONY: test
test: deps ## Run every test with -race against private redis-server processes
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

.PHONY: bench
bench: deps ## Benchmarks: herald vs bare asynq on one fresh redis-server
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)
