GO ?= go
BIN := bin
# Version stamped into the binaries (triadd --version, triadctl version,
# triad_build_info): git describe, else the source tree's release
# (internal/buildinfo.Release) when there is no git.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/triadlm/triad/internal/buildinfo.version=$(VERSION) -X github.com/triadlm/triad/internal/buildinfo.commit=$(COMMIT)

.PHONY: build run test bench chaos proto lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/triadd ./cmd/triadd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/triadctl ./cmd/triadctl

run: build
	BIN=$(BIN) scripts/cluster.sh run

test: lint
	$(GO) test -race -count=1 -timeout 45m ./...

bench: build
	$(GO) test -run '^$$' -bench 'ApplyBatchGrantRelease$$|^BenchmarkSnapshot$$|GrantWithRules|QueueHandOver' -benchtime 2000x ./fsm/
	$(GO) test -run '^$$' -bench 'Leases100k' -benchtime 3x ./fsm/
	BIN=$(BIN) RUN_DIR=.run-bench scripts/cluster.sh bench

# chaos runs the robustness suite's randomized campaign (docs/robustness.md):
# CHAOS_DURATION (default 10m) of runs, CHAOS_SEED to replay one, CHAOS_FAULTS
# (comma-separated) to draw from some fault types only.
CHAOS_DURATION ?= 10m
CHAOS_TIMEOUT ?= 2h
chaos:
	@out=$$(mktemp); TRIAD_CHAOS=1 CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_SEED=$(CHAOS_SEED) CHAOS_FAULTS=$(CHAOS_FAULTS) \
		$(GO) test -race -count=1 -timeout $(CHAOS_TIMEOUT) -run '^TestRobustness$$' -v ./integration/ >$$out 2>&1; rc=$$?; \
	grep -E '^(chaos campaign|runs|operations|indeterminate|faults|violations|--- FAIL|FAIL|ok|retried|minority|lease grace|log entries)|robustness violations' $$out; \
	echo "full output: $$out"; exit $$rc

proto:
	scripts/gen-proto.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN) .run .run-bench
