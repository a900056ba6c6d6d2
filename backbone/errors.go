package backbone

import (
	"errors"

	"github.com/s3t-dev/s3t/sdk"
)

// Sentinel errors. Functions wrap them with the operation and the offending names; test for them
// with errors.Is.
var (
	// ErrNotONNX means the bytes are not an ONNX model: not protobuf, truncated, or a protobuf
	// message without the fields every ONNX model has.
	ErrNotONNX = errors.New("not an ONNX model")
	// ErrNoGraph means the model has no graph.
	ErrNoGraph = errors.New("model has no graph")
	// ErrUnsupportedOpset means the model imports a default-domain opset outside
	// [MinOpset, MaxOpset], or none at all.
	ErrUnsupportedOpset = errors.New("unsupported opset")
	// ErrExternalData means a tensor stored outside the model file could not be read: no base
	// directory, a missing or short file, or a location outside the model's directory.
	ErrExternalData = errors.New("external tensor data")
	// ErrUnsupported means the model uses a construct this package cannot handle for the
	// requested operation (for example a string tensor where numbers are needed).
	ErrUnsupported = errors.New("unsupported")
	// ErrNoSuchTensor means a named tensor (value, initializer, input) is not in the graph.
	ErrNoSuchTensor = errors.New("no such tensor")
	// ErrInvalidGraph means a graph breaks a structural rule: nodes out of topological order,
	// duplicate names, an undefined input, or shapes and types that contradict each other.
	ErrInvalidGraph = errors.New("invalid graph")
	// ErrNameConflict means a rewrite would add a name that the graph already uses.
	ErrNameConflict = errors.New("name already in use")
	// ErrStaleEdge means an edge no longer matches the graph: its consumers do not read its tensor
	// (typically because the edge was already rewritten by an earlier splice).
	ErrStaleEdge = errors.New("stale edge")
	// ErrCutLeak means a cut does not separate the graph: the part above the cut would need values
	// computed below it other than the cut tensors.
	ErrCutLeak = errors.New("cut does not separate the graph")
	// ErrNoBlocks means no ordered list of blocks could be detected in the model.
	ErrNoBlocks = errors.New("no blocks found")
	// ErrInvalidManifest means a backbone manifest is malformed or does not match the model. It
	// is sdk.ErrInvalidManifest, so errors.Is matches either name.
	ErrInvalidManifest = sdk.ErrInvalidManifest
	// Errors of Canonicalize.
	// ErrInvalidOption means an option passed to Canonicalize is malformed or does not fit the
	// model (PinBatch(0), a batch the model fixes to another size, an unknown verification input).
	ErrInvalidOption = errors.New("invalid option")
	// ErrFold means ONNX Runtime could not evaluate the model's constant subgraphs.
	ErrFold = errors.New("constant folding failed")
	// ErrMismatch means the canonical model's outputs differ from the original's by more than
	// CanonicalTolerance.
	ErrMismatch = errors.New("canonical model differs from the original")
)
