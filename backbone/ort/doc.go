// Package ort runs ONNX models through ONNX Runtime. It is the only package in s3t that imports
// github.com/yalue/onnxruntime_go (and so the only one that needs cgo and the ONNX Runtime shared
// library).
//
// One ONNX Runtime environment serves the whole process: [Init] loads the library (see [Init] for
// where it looks) and is called implicitly by [NewSession]; [Shutdown] unloads it once every
// session is closed. A [Session] is safe for concurrent [Session.Run] calls. It takes and returns
// named [Tensor] values, checks every input against the model before ONNX Runtime sees it (names,
// element types, ranks, fixed dimensions, optionally NaN/Inf), and can run on CUDA with a logged
// fallback to CPU that callers can read back from [Session.Status].
//
// [RunStats] separates the time spent inside ONNX Runtime's Run from the wrapper's total, so a
// benchmark ([Bench], BenchmarkRun) can report the Go layer's overhead from one run.
package ort
