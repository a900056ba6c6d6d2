package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/training"
)

// predictInputs decodes a predict request body's inputs for a model of info, end to end in one
// slice. The common shape, {"inputs": [[...], ...]} with arrays of numbers only, is parsed in one
// pass over the bytes (parseInputs); anything else, and any body that pass refuses, goes through
// encoding/json, then training.AppendInput per input, which give the same inputs or the precise
// error. encoding/json scans every number of a request twice, which cost more than the rest of
// the route for one 28x28 input.
func predictInputs(body []byte, model string, info *serving.Info) ([]float32, int, error) {
	if x, n, ok := parseInputs(body, info.InputShape, info.MaxBatch); ok {
		return x, n, nil
	}
	return decodeInputs(body, model, info)
}

// decodeInputs is predictInputs through encoding/json.
func decodeInputs(body []byte, model string, info *serving.Info) ([]float32, int, error) {
	var req api.PredictRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, 0, invalidf("request body: %v", err)
	}
	if dec.More() {
		return nil, 0, invalidf("request body: more than one JSON value")
	}
	if len(req.Inputs) == 0 {
		return nil, 0, invalidf("inputs: at least one input is required")
	}
	if len(req.Inputs) > info.MaxBatch { // before parsing them
		return nil, 0, invalidf("inputs: %d inputs, at most %d per request", len(req.Inputs), info.MaxBatch)
	}
	x := make([]float32, 0, len(req.Inputs)*info.InputSize)
	for i, raw := range req.Inputs {
		var err error
		if x, err = training.AppendInput(x, raw, info.InputShape); err != nil {
			return nil, 0, invalidf("inputs[%d]: %v (model %q takes %d values, shape %v)", i, err, model, info.InputSize, info.InputShape)
		}
	}
	return x, len(req.Inputs), nil
}

// scratch holds the float32 buffers parseInputs parses into before it knows how many inputs a
// body holds.
var scratch = sync.Pool{New: func() any { return new([]float32) }}

// parseInputs parses {"inputs": [A, B, ...]}, each input an array of finite float32 numbers
// holding one example of shape, flat or nested as the shape (training.ScanInput), and nothing
// else around them but whitespace, into one slice of count examples. ok is false for a body of
// any other form, an input that is not such an example, or more than max inputs:
// encoding/json then decides (see predictInputs). The values go to a pooled
// buffer first and are copied once into a slice of their exact size.
func parseInputs(b []byte, shape []int64, max int) (x []float32, count int, ok bool) {
	i := 0
	ws := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	expect := func(s string) bool {
		ws()
		if !bytes.HasPrefix(b[i:], []byte(s)) {
			return false
		}
		i += len(s)
		return true
	}
	if !expect("{") || !expect(`"inputs"`) || !expect(":") || !expect("[") {
		return nil, 0, false
	}
	buf := scratch.Get().(*[]float32)
	defer scratch.Put(buf)
	vals := (*buf)[:0]
	for {
		var err error
		if vals, i, err = training.ScanInput(vals, b, i, shape); err != nil {
			return nil, 0, false
		}
		*buf = vals // keep the grown buffer
		if count++; count > max {
			return nil, 0, false
		}
		ws()
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == ']' {
			i++
			break
		}
		return nil, 0, false
	}
	if !expect("}") {
		return nil, 0, false
	}
	ws()
	if i != len(b) {
		return nil, 0, false
	}
	return slices.Clone(vals), count, true
}

// bodyError is the answer to a body that could not be read: the size limit's own error (413),
// or a 400.
func bodyError(err error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return err
	}
	return invalidf("request body: %v", err)
}

// bodies holds the body buffers of the inference routes, which read a body whole and are done
// with it once its inputs are decoded: a request of 8 MNIST inputs reads 28 KB.
var bodies sync.Pool // *[]byte

// readBody reads a request body whole, into a pooled buffer of the declared Content-Length when
// the request has one of at most 1 MiB (io.ReadAll alone grows its buffer from 512 bytes,
// allocating about twice a 7 KB single-input body and copying it as often). Larger declared
// lengths are not trusted with an allocation up front; the route's size limit applies either
// way, since the body reader stops at it. release gives a pooled buffer back: the caller must
// neither use the body after it nor keep anything that points into it.
func readBody(r *http.Request) (body []byte, release func(), err error) {
	if r.ContentLength <= 0 || r.ContentLength > 1<<20 {
		body, err = io.ReadAll(r.Body)
		return body, func() {}, err
	}
	buf, _ := bodies.Get().(*[]byte)
	if buf == nil || int64(cap(*buf)) < r.ContentLength {
		buf = new(make([]byte, r.ContentLength))
	}
	body = (*buf)[:r.ContentLength]
	release = func() { bodies.Put(buf) }
	if _, err := io.ReadFull(r.Body, body); err != nil {
		release()
		return nil, func() {}, err // a shorter body, or the size limit (*http.MaxBytesError)
	}
	return body, release, nil // net/http's body reader ends at Content-Length
}
