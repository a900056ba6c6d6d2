package backbone

import "github.com/s3t-dev/s3t/sdk"

// The manifest, subgraph and tensor types are plain data that plugins exchange with the host, so
// they live in package sdk, which plugin authors import without this package. The declarations
// below re-export them under their historical names: backbone.Edge is sdk.Edge, and so on.

// The manifest types (see sdk.Manifest).
type (
	// Manifest is sdk.Manifest: a backbone's blocks and the edges a PEFT type may rewrite.
	Manifest = sdk.Manifest
	// Block is sdk.Block: one block of the backbone.
	Block = sdk.Block
	// Edge is sdk.Edge: a tensor a PEFT type may rewrite.
	Edge = sdk.Edge
	// Role is sdk.Role: what an edge is in its block.
	Role = sdk.Role
	// EdgeKind is sdk.EdgeKind: weight or activation.
	EdgeKind = sdk.EdgeKind
	// Layout is sdk.Layout: how an edge's dimensions are arranged.
	Layout = sdk.Layout
	// Slice is sdk.Slice: the part of a packed tensor an edge is.
	Slice = sdk.Slice
)

// The subgraph and tensor types (see sdk.Subgraph).
type (
	// Subgraph is sdk.Subgraph: a rewrite f(edge, params) -> new value.
	Subgraph = sdk.Subgraph
	// Node is sdk.Node: one operator application in a Subgraph.
	Node = sdk.Node
	// Attr is sdk.Attr: one node attribute.
	Attr = sdk.Attr
	// Tensor is sdk.Tensor: a small dense float32 or int64 tensor given by value.
	Tensor = sdk.Tensor
	// DType is sdk.DType: a tensor element type numbered as ONNX's.
	DType = sdk.DType
	// Dim is sdk.Dim: a fixed, symbolic or unknown dimension.
	Dim = sdk.Dim
	// Shape is sdk.Shape: a tensor shape, nil when the rank is unknown.
	Shape = sdk.Shape
)

// ManifestVersion is sdk.ManifestVersion, the schema version of Manifest.
const ManifestVersion = sdk.ManifestVersion

// The standard roles (see sdk.Role).
const (
	RoleQuery           = sdk.RoleQuery
	RoleKey             = sdk.RoleKey
	RoleValue           = sdk.RoleValue
	RoleAttentionOutput = sdk.RoleAttentionOutput
	RoleMLPIn           = sdk.RoleMLPIn
	RoleMLPOut          = sdk.RoleMLPOut
	RoleOutput          = sdk.RoleOutput
	RoleAttentionKeys   = sdk.RoleAttentionKeys
	RoleAttentionValues = sdk.RoleAttentionValues
	RoleAttentionScores = sdk.RoleAttentionScores
	RoleAttentionResult = sdk.RoleAttentionResult
)

// The edge kinds (see sdk.EdgeKind).
const (
	KindWeight     = sdk.KindWeight
	KindActivation = sdk.KindActivation
)

// The layouts (see sdk.Layout).
const (
	LayoutInOut         = sdk.LayoutInOut
	LayoutOutIn         = sdk.LayoutOutIn
	LayoutHeadDimTokens = sdk.LayoutHeadDimTokens
	LayoutTokensHeadDim = sdk.LayoutTokensHeadDim
	LayoutQueryKey      = sdk.LayoutQueryKey
)

// The element types (see sdk.DType).
const (
	DTypeUndefined  = sdk.DTypeUndefined
	DTypeFloat32    = sdk.DTypeFloat32
	DTypeUint8      = sdk.DTypeUint8
	DTypeInt8       = sdk.DTypeInt8
	DTypeUint16     = sdk.DTypeUint16
	DTypeInt16      = sdk.DTypeInt16
	DTypeInt32      = sdk.DTypeInt32
	DTypeInt64      = sdk.DTypeInt64
	DTypeString     = sdk.DTypeString
	DTypeBool       = sdk.DTypeBool
	DTypeFloat16    = sdk.DTypeFloat16
	DTypeFloat64    = sdk.DTypeFloat64
	DTypeUint32     = sdk.DTypeUint32
	DTypeUint64     = sdk.DTypeUint64
	DTypeComplex64  = sdk.DTypeComplex64
	DTypeComplex128 = sdk.DTypeComplex128
	DTypeBFloat16   = sdk.DTypeBFloat16
)

// ParseDType is sdk.ParseDType: the type named s ("float32"; "float" is accepted for float32).
func ParseDType(s string) (DType, error) { return sdk.ParseDType(s) }

// ShapeOf is sdk.ShapeOf: the fixed shape with the given sizes (negative sizes become unknown).
func ShapeOf(sizes ...int64) Shape { return sdk.ShapeOf(sizes...) }

// Zeros is sdk.Zeros: a float32 tensor of zeros.
func Zeros(name string, shape ...int64) Tensor { return sdk.Zeros(name, shape...) }

// Scalar is sdk.Scalar: a float32 scalar tensor.
func Scalar(name string, v float32) Tensor { return sdk.Scalar(name, v) }

// Int64s is sdk.Int64s: a one-dimensional int64 tensor.
func Int64s(name string, v ...int64) Tensor { return sdk.Int64s(name, v...) }

// IntAttr is sdk.IntAttr: an int attribute.
func IntAttr(name string, v int64) Attr { return sdk.IntAttr(name, v) }

// FloatAttr is sdk.FloatAttr: a float attribute.
func FloatAttr(name string, v float32) Attr { return sdk.FloatAttr(name, v) }

// StringAttr is sdk.StringAttr: a string attribute.
func StringAttr(name, v string) Attr { return sdk.StringAttr(name, v) }

// IntsAttr is sdk.IntsAttr: a list-of-ints attribute.
func IntsAttr(name string, v ...int64) Attr { return sdk.IntsAttr(name, v...) }

// FloatsAttr is sdk.FloatsAttr: a list-of-floats attribute.
func FloatsAttr(name string, v ...float32) Attr { return sdk.FloatsAttr(name, v...) }

// TensorAttr is sdk.TensorAttr: a tensor attribute.
func TensorAttr(name string, t Tensor) Attr { return sdk.TensorAttr(name, t) }
