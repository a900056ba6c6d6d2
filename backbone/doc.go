// Package backbone reads, inspects and rewrites frozen ONNX backbones; its subpackage ort runs
// them through ONNX Runtime.
//
// # Loading
//
// LoadFile and LoadBytes parse an ONNX model (default-domain opset MinOpset..MaxOpset, that is
// 7..21), reading tensors stored as external data relative to the
// model's directory, so that a loaded Model is self-contained. Bad input is an error, never a
// panic: ErrNotONNX for bytes that are not a model (truncated, foreign), ErrNoGraph,
// ErrUnsupportedOpset, ErrExternalData. Nodes without a name get one on load, because edges name
// the nodes that read them.
//
// A Model is immutable. Rewrites return a new Model that shares initializer data with the old one.
//
// # Inspection and the manifest
//
// Model.Inspect summarises inputs, outputs, opsets, initializers and operators. The Manifest
// lists the backbone's blocks from bottom to top and, per block, the edges a PEFT type may
// rewrite: weights by role (query, key, value, attention_output, mlp_in, mlp_out), the block
// output, and the attention keys, values and scores where they exist as tensors. DetectManifest
// finds it for common PyTorch exports from module paths in tensor and node names, matching block
// indices component by component; ParseManifest and ResolveManifest take a hand-written one. The
// Manifest is plain JSON with stable field names: plugins receive it. The manifest, subgraph and
// tensor types are defined in package sdk, which plugin authors import without this package;
// this package re-exports them under the same names (backbone.Edge is sdk.Edge), and
// Model.ValidateManifest checks a manifest against a model.
//
// # Rewrites
//
// Model.Splice replaces edges by Subgraphs (f(edge, params) -> new value) whose parameters become
// graph inputs with default initializers holding their "off" values, so the spliced model runs
// with or without them; Model.SplicePlan splices a PEFT plugin's whole plan. Model.Unpack splits
// packed q/k/v weights into separate initializers. Model.Cut splits a model into a trunk that computes a tensor and a top that continues from it;
// Model.ExposeOutputs makes intermediate tensors outputs. Every rewrite validates its result
// (Model.Validate): topological order, unique names, defined inputs, consistent types and shapes
// where known.
//
// # Canonical form
//
// Model.Canonicalize rewrites an export into the form both engines (ONNX Runtime and the GoMLX
// trainer) run the same way: packed q/k/v weights unpacked and their projections split into
// separate MatMuls (no Slice left), constant subgraphs (shape arithmetic, Constant nodes,
// transposed weights) evaluated once with ONNX Runtime and stored as initializers that keep
// their names, and optionally the batch dimension pinned (PinBatch). It verifies by default that
// the canonical model's outputs equal the original's (CanonicalTolerance).
//
// # Generated code
//
// The ONNX protobuf types live in internal/onnxpb, generated from Debian's libonnx-dev onnx.proto
// by `go generate ./backbone/...`, which needs the Debian packages protobuf-compiler and
// libonnx-dev. They never appear in this package's API.
package backbone
