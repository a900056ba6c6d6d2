#!/bin/sh
# gen.sh regenerates plugin.pb.go and plugin_grpc.pb.go from plugin.proto (see gen.go). Needs
# protoc (Debian: protobuf-compiler); the Go generators run from the module proxy at pinned
# versions, nothing is installed.
set -eu
command -v protoc >/dev/null || { echo "gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# protoc-gen-go-grpc v1.3.0 emits code for grpc >= 1.52 (SupportPackageIsVersion7); later
# releases need a newer grpc than go-plugin v1.8.0 pins (1.61).
GOBIN="$tmp/bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$tmp/bin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0
pkg=github.com/s3t-dev/s3t/sdk/internal/pluginpb
protoc --plugin=protoc-gen-go="$tmp/bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$tmp/bin/protoc-gen-go-grpc" \
  -I. --go_out=. --go_opt=module=$pkg --go_opt=Mplugin.proto=$pkg \
  --go-grpc_out=. --go-grpc_opt=module=$pkg --go-grpc_opt=Mplugin.proto=$pkg \
  plugin.proto
