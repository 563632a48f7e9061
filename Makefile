GO ?= go
BIN := bin

.PHONY: build run test bench proto lint clean

build:
	$(GO) build -o $(BIN)/triadd ./cmd/triadd
	$(GO) build -o $(BIN)/triadctl ./cmd/triadctl

run: build
	BIN=$(BIN) scripts/cluster.sh run

test: lint
	$(GO) test -race -count=1 -timeout 20m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./fsm/
	BIN=$(BIN) RUN_DIR=.run-bench CLIENTS=64 DURATION=10s scripts/cluster.sh bench

proto:
	scripts/gen-proto.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN) .run .run-bench
