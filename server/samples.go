package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// maxLineErrors caps the per-line errors reported for one rejected upload.
const maxLineErrors = 100

// uploadSamples reads an NDJSON stream of api.Sample lines (size-limited by the route), checks
// every line, and stores the batch in one ledger transaction: either every sample is stored or
// none is, and a rejected upload lists the failing lines.
func (s *Server) uploadSamples(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	m, err := s.cfg.Store.GetModel(ctx, name)
	if err != nil {
		return fmt.Errorf("upload samples: %w", err)
	}
	rec, err := training.DecodeRecord(m)
	if err != nil {
		return err
	}
	var (
		samples []store.Sample
		lineOf  []int // lineOf[i] is the line of samples[i]
		bad     []api.LineError
	)
	sc := bufio.NewScanner(c.Request().Body)
	sc.Buffer(make([]byte, 0, min(64<<10, s.cfg.MaxLineBytes)), s.cfg.MaxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		smp, input, lerr := parseSampleLine(line, rec)
		if lerr != nil {
			lerr.Line = n
			if len(bad) < maxLineErrors {
				bad = append(bad, *lerr)
			}
			continue
		}
		samples = append(samples, store.Sample{ID: smp.ID, Label: smp.Label, Input: training.EncodeInput(input)})
		lineOf = append(lineOf, n)
	}
	if err := sc.Err(); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		if errors.Is(err, bufio.ErrTooLong) {
			return rejectedUpload(http.StatusBadRequest, api.CodeInvalid, append(bad, api.LineError{Line: n + 1,
				Code: api.CodeInvalid, Message: fmt.Sprintf("the line exceeds %d bytes", s.cfg.MaxLineBytes)}))
		}
		return fmt.Errorf("read upload: %w", err)
	}
	if len(bad) > 0 {
		return rejectedUpload(http.StatusBadRequest, api.CodeInvalid, bad)
	}
	if len(samples) == 0 {
		return invalidf("no samples in the upload (one JSON object per line: id, input, label)")
	}
	res, err := s.cfg.Store.PutSamples(ctx, name, samples)
	if err != nil {
		if len(res) != len(samples) {
			return fmt.Errorf("upload samples: %w", err)
		}
		status, code := http.StatusBadRequest, api.CodeInvalid
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrGone) {
			status, code = http.StatusConflict, api.CodeConflict
		}
		for i, r := range res {
			if r.Err != nil && len(bad) < maxLineErrors {
				_, e := toAPIError(r.Err)
				bad = append(bad, api.LineError{Line: lineOf[i], ID: r.ID, Code: e.Code, Message: r.Err.Error()})
			}
		}
		return rejectedUpload(status, code, bad)
	}
	out := api.UploadSamplesResponse{Samples: make([]api.UploadedSample, len(res))}
	for i, r := range res {
		out.Samples[i] = api.UploadedSample{ID: r.ID, Placement: api.Placement(r.Placement), Existed: r.Existed}
		if r.Existed {
			out.Existed++
		} else {
			out.Stored++
		}
	}
	s.log.Info("samples uploaded", "model", name, "stored", out.Stored, "existed", out.Existed)
	return c.JSON(http.StatusOK, out)
}

func rejectedUpload(status int, code string, lines []api.LineError) error {
	return &statusError{status: status, body: &api.Error{Code: code,
		Message: fmt.Sprintf("%d line(s) rejected (first: line %d: %s); nothing was stored", len(lines), lines[0].Line, lines[0].Message),
		Lines:   lines}}
}

// maxSampleID is the longest sample id, in bytes. An id goes into URL paths, receipts and logs;
// ids may hold any printable text (spaces, slashes and percent signs are escaped in paths), but
// no control characters, and no U+FFFD: JSON decoding puts it in place of invalid UTF-8 and of
// lone surrogates (\ud800), so such an id would be stored as another than the one sent, which
// its deletion then does not find. "." and ".." cannot be a path segment.
const maxSampleID = 512

// sampleDecodeError says what is wrong with a line that does not decode as a sample, in the
// terms of the upload format rather than of Go's types.
func sampleDecodeError(line []byte, err error) string {
	const want = `want one JSON object a line, {"id":"...","input":[...],"label":"..."}`
	var te *json.UnmarshalTypeError
	switch {
	case bytes.HasPrefix(bytes.TrimSpace(line), []byte("[")):
		return "an array, not a sample object: " + want + " (NDJSON, not a JSON array of samples)"
	case errors.As(err, &te) && te.Field == "label":
		return fmt.Sprintf("label is a JSON %s: it must be a string, one of the model's labels (\"7\", not 7)", te.Value)
	case errors.As(err, &te) && te.Field == "id":
		return fmt.Sprintf("id is a JSON %s: it must be a string", te.Value)
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf("a JSON %s, not a sample object: %s", te.Value, want)
	}
	return fmt.Sprintf("not a sample object (%s): %v", want, err)
}

// parseSampleLine decodes and checks one NDJSON line against the model: the input must hold
// exactly the backbone's values for one example, the label be one of the model's.
func parseSampleLine(line []byte, rec *training.Record) (*api.Sample, []float32, *api.LineError) {
	var smp api.Sample
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&smp); err != nil {
		return nil, nil, &api.LineError{Code: api.CodeInvalid, Message: sampleDecodeError(line, err)}
	}
	switch {
	case dec.More():
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: "more than one JSON value on the line"}
	case smp.ID == "":
		return nil, nil, &api.LineError{Code: api.CodeInvalid, Message: "id is required"}
	case len(smp.ID) > maxSampleID:
		return nil, nil, &api.LineError{Code: api.CodeInvalid, Message: fmt.Sprintf("id has %d bytes, over %d", len(smp.ID), maxSampleID)}
	case strings.ContainsFunc(smp.ID, unicode.IsControl):
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: "id holds a control character"}
	case strings.ContainsRune(smp.ID, utf8.RuneError):
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: "id is not valid UTF-8, or holds a lone surrogate or U+FFFD: it would be stored as another id than the one sent"}
	case smp.ID == "." || smp.ID == "..":
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: fmt.Sprintf("id %q cannot be addressed in a URL path", smp.ID)}
	case len(smp.Input) == 0 || string(smp.Input) == "null":
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: "input is required"}
	case !hasLabel(&rec.ModelSpec, smp.Label):
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: fmt.Sprintf("label %q is not one of the model's labels", smp.Label)}
	}
	input, err := training.ParseInput(smp.Input, rec.InputShape)
	if err != nil {
		return nil, nil, &api.LineError{ID: smp.ID, Code: api.CodeInvalid, Message: fmt.Sprintf("%v (the backbone takes %v per example)", err, rec.InputShape)}
	}
	return &smp, input, nil
}

func (s *Server) getSample(c echo.Context) error {
	smp, err := s.cfg.Store.GetSample(c.Request().Context(), param(c, "name"), param(c, "id"))
	var gone *store.GoneError
	if errors.As(err, &gone) && !s.auth.allows(c, api.ScopeDelete) {
		// Receipts are the delete scope's to read (GET /v1/deletions/...): say only that the
		// sample is gone.
		return fmt.Errorf("get sample: sample %q was deleted (its receipt is for keys with the delete scope): %w", param(c, "id"), store.ErrGone)
	}
	if err != nil {
		return fmt.Errorf("get sample: %w", err)
	}
	return c.JSON(http.StatusOK, api.SampleInfo{ID: smp.ID, Label: smp.Label, Placement: api.Placement(smp.Placement), CreatedAt: smp.CreatedAt})
}
