#!/usr/bin/env bash
# Regenerates the Go code in proto/ with pinned generator versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO_VERSION=v1.36.11
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
bin="$(pwd)/.bin"
mkdir -p "$bin"
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
if ! command -v protoc >/dev/null; then
  echo "protoc not found: install it with 'apt-get install -y protobuf-compiler'" >&2
  exit 1
fi
export PATH="$bin:$PATH"
for f in proto/triad/v1/triad.proto proto/fsmpb/fsm.proto proto/peerpb/peer.proto; do
  protoc -I proto \
    --go_out=proto --go_opt=module=github.com/triadlm/triad/proto \
    --go-grpc_out=proto --go-grpc_opt=module=github.com/triadlm/triad/proto \
    "$f"
done
