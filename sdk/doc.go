// Package sdk is the public contract for s3t plugin authors.
//
// A plugin implements one small interface whose methods all have the shape
// (ctx, *Request) (*Response, error), with plain Go request and response types. The
// built-in sequence selectors and PEFT types are written against this package exactly as
// an outside author would write them.
//
// This version defines the [Selector] contract. The PEFT contract, Serve, the gRPC shims and
// the conformance suite arrive with the plugin host.
package sdk
