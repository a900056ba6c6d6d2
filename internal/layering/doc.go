// Package layering holds the test that keeps heavy dependencies in their one package each
// (DESIGN.md): ONNX Runtime only in backbone/ort, GoMLX only in adapters, Echo only in server,
// SQL drivers and River only in store, go-plugin and gRPC only in sdk and plugins.
package layering
