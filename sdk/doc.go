// Package sdk is the public contract for s3t plugin authors: new PEFT types and sequence
// selectors ship as plugins, processes the s3t host starts and talks to over gRPC through
// hashicorp/go-plugin.
//
// A plugin implements one small interface whose methods all have the shape
// (ctx, *Request) (*Response, error), with plain Go request and response types, and calls Serve
// from its main:
//
//   - PEFT (Describe, Plan): a PEFT type described as data. Given a backbone Manifest (its
//     blocks, bottom to top, and the edges a PEFT type may rewrite) and a config, Plan returns
//     per block the new parameters, each with an "off" value that makes its rewrite the identity
//     and an Init for training, and for each edge it rewrites a Subgraph f(edge value, params) ->
//     new value. The host splices the subgraphs into the backbone and runs the result in ONNX
//     Runtime and the GoMLX trainer; a plugin is consulted when a model is created (its plan is
//     stored with the model), never on a hot path. Write subgraphs with a Builder.
//   - Selector (Select): (L, B, prior, seed) -> B distinct permutations of the L slices.
//
// The built-in plugins (peft.lora, peft.prefix, peft.adapter, selector.cyclic, selector.bms,
// selector.random) are written against this package exactly as an outside author would write
// them. Package sdktest is the conformance suite a plugin runs in its own tests; README.md is
// the author's guide and states the protocol's compatibility rule.
//
// The package is part of the module github.com/s3t-dev/s3t (Go 1.26 or newer; untagged so far,
// so a plugin's module requires a commit's pseudo-version or replaces the module with a clone).
// It builds without cgo, so a plugin binary can be static; sdktest needs cgo and, for the PEFT
// checks, ONNX Runtime 1.30.0. README.md says how, and documents the go-plugin handshake (the
// magic cookie S3T_PLUGIN_MAGIC_COOKIE, protocol version 1) for plugins in other languages.
//
// The generated gRPC code is in internal/pluginpb and never appears in this package's API; the
// shims and converters are unexported. The manifest, subgraph and tensor types are the ones
// package backbone uses (backbone re-exports them), so a plan needs no conversion on the host.
package sdk
