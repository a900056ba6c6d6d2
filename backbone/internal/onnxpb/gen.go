// Package onnxpb holds the Go types for the ONNX protobuf schema.
//
// onnx.pb.go is generated from Debian's libonnx-dev copy of onnx.proto
// (/usr/include/onnx/onnx.proto, ONNX 1.12, IR version 8) by gen.sh, with protoc and the
// protoc-gen-go of the google.golang.org/protobuf version pinned in go.mod (built into a temporary
// directory, nothing installed). The wire format is ONNX's; only the protobuf package name is
// changed, from "onnx" to "s3t.backbone.onnx", and the file registered as
// "s3t/backbone/onnx/onnx.proto", so that another copy of onnx.proto linked into the same binary (a
// plugin SDK, a third-party library) cannot collide with this one in the global protobuf registry,
// which panics on duplicate names.
//
// The package is internal: no exported signature of package backbone mentions these types.
//
// Regenerating (`go generate ./backbone/...` or `make generate`) needs the Debian packages
// protobuf-compiler (protoc) and libonnx-dev (onnx.proto); building and testing do not.
package onnxpb

//go:generate sh gen.sh
