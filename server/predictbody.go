package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
)

// decodePredict reads a predict request. The common shape, {"inputs": [[...], ...]} with arrays
// of numbers only, is split into its inputs by one pass over the bytes (each input is then
// parsed and checked by training.ParseInput); anything else goes through encoding/json, which
// also gives the precise error. encoding/json scans every number of a request twice, which
// cost more than the rest of the route for one 28x28 input.
func decodePredict(c echo.Context, req *api.PredictRequest) error {
	body, err := readBody(c.Request())
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return invalidf("request body: %v", err)
	}
	if inputs, ok := splitInputs(body); ok {
		req.Inputs = inputs
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		return invalidf("request body: %v", err)
	}
	if dec.More() {
		return invalidf("request body: more than one JSON value")
	}
	return nil
}

// readBody reads a request body whole, into a buffer of the declared Content-Length when the
// request has one of at most 1 MiB (io.ReadAll alone grows its buffer from 512 bytes, allocating
// about twice a 7 KB single-input body and copying it as often). Larger declared lengths are not
// trusted with an allocation up front; the route's size limit applies either way, since the body
// reader stops at it.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 || r.ContentLength > 1<<20 {
		return io.ReadAll(r.Body)
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return nil, err // a shorter body, or the size limit (*http.MaxBytesError)
	}
	return buf, nil // net/http's body reader ends at Content-Length
}

// splitInputs splits {"inputs": [A, B, ...]} into A, B, ... when the body has exactly that
// shape and A, B, ... hold only arrays, numbers, commas and whitespace; ok is false otherwise.
func splitInputs(b []byte) (inputs []json.RawMessage, ok bool) {
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
		return nil, false
	}
	ws()
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			ws()
			if i >= len(b) || b[i] != '[' {
				return nil, false
			}
			start, depth := i, 0
			for ; i < len(b); i++ {
				switch c := b[i]; {
				case c == '[':
					depth++
				case c == ']':
					depth--
				case c == ',' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || (c >= '0' && c <= '9') ||
					c == ' ' || c == '\t' || c == '\n' || c == '\r':
				default:
					return nil, false
				}
				if depth == 0 {
					i++
					break
				}
			}
			if depth != 0 {
				return nil, false
			}
			inputs = append(inputs, json.RawMessage(b[start:i]))
			ws()
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			return nil, false
		}
	}
	if !expect("}") {
		return nil, false
	}
	ws()
	return inputs, i == len(b)
}
