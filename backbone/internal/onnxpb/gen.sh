#!/bin/sh
# gen.sh regenerates onnx.pb.go from Debian's onnx.proto (see gen.go). Needs protobuf-compiler and
# libonnx-dev; run it through `go generate ./backbone/...`.
set -eu
proto=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
pkg=github.com/s3t-dev/s3t/backbone/internal/onnxpb
command -v protoc >/dev/null || { echo "gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
[ -f "$proto" ] || { echo "gen.sh: $proto not found (apt-get install libonnx-dev)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
mkdir -p "$tmp/src/s3t/backbone/onnx"
sed 's/^package onnx;$/package s3t.backbone.onnx;/' "$proto" >"$tmp/src/s3t/backbone/onnx/onnx.proto"
grep -q '^package s3t.backbone.onnx;$' "$tmp/src/s3t/backbone/onnx/onnx.proto" ||
  { echo "gen.sh: no 'package onnx;' line in $proto" >&2; exit 1; }
protoc --plugin=protoc-gen-go="$tmp/bin/protoc-gen-go" -I"$tmp/src" \
  --go_out=. --go_opt=module=$pkg --go_opt=Ms3t/backbone/onnx/onnx.proto=$pkg \
  s3t/backbone/onnx/onnx.proto
