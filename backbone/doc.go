// Package backbone reads, inspects and rewrites frozen ONNX backbones and runs them through
// ONNX Runtime.
package backbone
