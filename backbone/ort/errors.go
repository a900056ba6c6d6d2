package ort

import "errors"

// Sentinel errors. Every error the package returns wraps one of them together with the operation
// and the detail; test with errors.Is.
var (
	// ErrLibrary means the ONNX Runtime shared library could not be loaded.
	ErrLibrary = errors.New("ort: cannot load the ONNX Runtime library")
	// ErrAlreadyInitialized means Init asked for a library other than the one already loaded:
	// a process holds one ONNX Runtime environment.
	ErrAlreadyInitialized = errors.New("ort: ONNX Runtime already initialized with another library")
	// ErrBusy means Shutdown was called while sessions are still open.
	ErrBusy = errors.New("ort: sessions still open")
	// ErrInvalidModel means the bytes are not an ONNX model ONNX Runtime can load (truncated or
	// foreign data, an unsupported opset, a graph that does not validate).
	ErrInvalidModel = errors.New("ort: invalid or unsupported ONNX model")
	// ErrInvalidArgument means an option or argument is out of range (negative thread count,
	// unknown execution provider, batch size below 1, ...).
	ErrInvalidArgument = errors.New("ort: invalid argument")
	// ErrClosed means the session was closed.
	ErrClosed = errors.New("ort: session closed")
	// ErrUnknownInput means a tensor was fed under a name the session does not take.
	ErrUnknownInput = errors.New("ort: unknown input")
	// ErrMissingInput means an input the session needs was not fed.
	ErrMissingInput = errors.New("ort: missing input")
	// ErrUnknownOutput means an output was asked for that the session does not produce.
	ErrUnknownOutput = errors.New("ort: unknown output")
	// ErrDType means a tensor's element type is not the one the model declares, or is not
	// supported by this package.
	ErrDType = errors.New("ort: wrong element type")
	// ErrShape means a tensor's shape does not match its data or the model (rank, a fixed
	// dimension), or outputs cannot be concatenated across batches.
	ErrShape = errors.New("ort: wrong shape")
	// ErrNotFinite means a float tensor holds NaN or ±Inf where the caller asked for a check.
	ErrNotFinite = errors.New("ort: tensor holds NaN or Inf")
	// ErrRun means ONNX Runtime itself failed to run the model.
	ErrRun = errors.New("ort: run failed")
)
