package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client calls an s3t server. It is safe for concurrent use.
type Client struct {
	base *url.URL
	key  string
	http *http.Client
	// fast sends the predictions, when the client has no http.Client of the caller's and the
	// server is plain http with no proxy before it (see fastPoster); nil otherwise.
	fast *fastPoster
}

// ClientOption configures NewClient.
type ClientOption func(*Client)

// WithAPIKey sends key as a bearer token on every request.
func WithAPIKey(key string) ClientOption { return func(c *Client) { c.key = key } }

// WithHTTPClient sets the HTTP client (default: one on DefaultTransport). Every request then
// goes through it, predictions included (without it, predictions to a plain http:// server
// that no proxy stands before go over the client's own connections: see fastPoster).
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// DefaultTransport is the transport of a Client made without WithHTTPClient, shared by all of
// them: net/http's default, keeping up to 64 idle connections per server instead of 2. A
// Client is used concurrently (many predictions at once); with 2, every request beyond the
// second in flight opened a new TCP connection and closed it after the response
// (TestConcurrentRequestsReuseConnections).
var DefaultTransport http.RoundTripper = defaultTransport

// defaultTransport is DefaultTransport as the package sets it: predictions take the fast path
// (fastPoster) only while DefaultTransport is still this one, since a replacement may dial,
// trace or route requests its own way.
var defaultTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.MaxIdleConns = 256
	return t
}()

// NewClient returns a client of the server at base, e.g. "http://127.0.0.1:8080".
func NewClient(base string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("api: server url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("api: server url %q: scheme must be http or https", base)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("api: server url %q: no host", base)
	}
	own := &http.Client{Transport: DefaultTransport}
	c := &Client{base: u, http: own}
	for _, o := range opts {
		o(c)
	}
	if DefaultTransport == http.RoundTripper(defaultTransport) && c.http == own && fastEligible(u, defaultTransport.Proxy) {
		c.fast = fastPosterFor(u)
	}
	return c, nil
}

// CloseIdleConnections closes the client's idle connections to its server (shared with the
// other Clients of that server), those of its http.Client included.
func (c *Client) CloseIdleConnections() {
	if c.fast != nil {
		c.fast.closeIdle()
	}
	c.http.CloseIdleConnections()
}

// IsNotFound reports whether err is an *Error with Code CodeNotFound.
func IsNotFound(err error) bool { return hasCode(err, CodeNotFound) }

// IsGone reports whether err is an *Error with Code CodeGone (its Receipt is the earlier one).
func IsGone(err error) bool { return hasCode(err, CodeGone) }

// IsInvalid reports whether err is the server's 400: the request is malformed.
func IsInvalid(err error) bool { return hasCode(err, CodeInvalid) }

// IsConflict reports whether err is the server's 409: the request contradicts stored state.
func IsConflict(err error) bool { return hasCode(err, CodeConflict) }

func hasCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// do sends one request; body is JSON-encoded unless it is an io.Reader, sent with ctype.
func (c *Client) do(ctx context.Context, method, path string, body any, ctype string, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("api: %s %s: encode: %w", method, path, err)
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	res, err := c.send(ctx, method, path, rd, ctype)
	if err != nil {
		return err
	}
	return decodeResponse(method, path, res.status, res.body, out)
}

// send sends one request through the client's http.Client, with ctype (when not empty) and
// the extra headers, and reads the response to its end.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, ctype string, extra ...[2]string) (*rawResponse, error) {
	p, query, _ := strings.Cut(path, "?") // JoinPath would escape a query's "?"
	u := c.base.JoinPath(p)
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for _, h := range extra {
		req.Header.Set(h[0], h[1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: read response: %w", method, path, err)
	}
	return &rawResponse{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// decodeResponse decodes a response body into out (nil: nothing to decode), or returns the
// *Error of a status of 300 or more.
func decodeResponse(method, path string, status int, data []byte, out any) error {
	if status >= 300 {
		return errorOf(status, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("api: %s %s: decode response: %w", method, path, err)
	}
	return nil
}

// errorOf is the *Error of an error response: its s3t error body, or, from something else on
// the way (a proxy's 502 or an HTML 404), the status's code (CodeFor, so that IsNotFound and
// the like hold) with the body's text, cut to maxErrorText bytes, as the message.
func errorOf(status int, data []byte) *Error {
	var eb ErrorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error == nil {
		msg := strings.TrimSpace(string(data))
		if len(msg) > maxErrorText {
			msg = strings.ToValidUTF8(msg[:maxErrorText], "") + "..."
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		eb.Error = &Error{Code: CodeFor(status), Message: msg}
	}
	eb.Error.Status = status
	return eb.Error
}

// maxErrorText caps the message errorOf takes from an error body that is not s3t's.
const maxErrorText = 512

func call[T any](ctx context.Context, c *Client, method, path string, body any, ctype string) (*T, error) {
	out := new(T)
	if err := c.do(ctx, method, path, body, ctype, out); err != nil {
		return nil, err
	}
	return out, nil
}

func seg(s string) string { return url.PathEscape(s) }

// Health calls /healthz.
func (c *Client) Health(ctx context.Context, _ *HealthRequest) (*Health, error) {
	return call[Health](ctx, c, http.MethodGet, "/healthz", nil, "")
}

// RegisterBackbone registers a backbone from an upload (req.ONNX) or a server path (req.Path).
func (c *Client) RegisterBackbone(ctx context.Context, req *RegisterBackboneRequest) (*Backbone, error) {
	if req.ONNX != nil {
		return call[Backbone](ctx, c, http.MethodPut, "/v1/backbones/"+seg(req.Name), bytes.NewReader(req.ONNX), "application/octet-stream")
	}
	return call[Backbone](ctx, c, http.MethodPost, "/v1/backbones", req, "")
}

// ListBackbones lists the registered backbones.
func (c *Client) ListBackbones(ctx context.Context, _ *ListBackbonesRequest) (*ListBackbonesResponse, error) {
	return call[ListBackbonesResponse](ctx, c, http.MethodGet, "/v1/backbones", nil, "")
}

// GetBackbone returns a backbone with its manifest and runtime status.
func (c *Client) GetBackbone(ctx context.Context, req *GetBackboneRequest) (*Backbone, error) {
	return call[Backbone](ctx, c, http.MethodGet, "/v1/backbones/"+seg(req.Name), nil, "")
}

// CreateModel creates a model.
func (c *Client) CreateModel(ctx context.Context, req *CreateModelRequest) (*Model, error) {
	return call[Model](ctx, c, http.MethodPost, "/v1/models", req, "")
}

// ListModels lists the models.
func (c *Client) ListModels(ctx context.Context, _ *ListModelsRequest) (*ListModelsResponse, error) {
	return call[ListModelsResponse](ctx, c, http.MethodGet, "/v1/models", nil, "")
}

// GetModel returns a model with its live prefixes.
func (c *Client) GetModel(ctx context.Context, req *GetModelRequest) (*Model, error) {
	return call[Model](ctx, c, http.MethodGet, "/v1/models/"+seg(req.Name), nil, "")
}

// DeleteModel erases a model and everything recorded for it.
func (c *Client) DeleteModel(ctx context.Context, req *DeleteModelRequest) (*DeleteModelResponse, error) {
	return call[DeleteModelResponse](ctx, c, http.MethodDelete, "/v1/models/"+seg(req.Name), nil, "")
}

// UploadSamples uploads samples as NDJSON, all or nothing.
func (c *Client) UploadSamples(ctx context.Context, req *UploadSamplesRequest) (*UploadSamplesResponse, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range req.Samples {
		if err := enc.Encode(&req.Samples[i]); err != nil {
			return nil, fmt.Errorf("api: encode sample %d: %w", i, err)
		}
	}
	return c.UploadNDJSON(ctx, req.Model, &buf)
}

// UploadNDJSON streams an NDJSON body of samples (one Sample per line) to model.
func (c *Client) UploadNDJSON(ctx context.Context, model string, r io.Reader) (*UploadSamplesResponse, error) {
	return call[UploadSamplesResponse](ctx, c, http.MethodPost, "/v1/models/"+seg(model)+"/samples", r, "application/x-ndjson")
}

// GetSample returns a stored sample's label and placement.
func (c *Client) GetSample(ctx context.Context, req *GetSampleRequest) (*SampleInfo, error) {
	return call[SampleInfo](ctx, c, http.MethodGet, "/v1/models/"+seg(req.Model)+"/samples/"+seg(req.ID), nil, "")
}

// DeleteSample unlearns one sample and returns its receipt.
func (c *Client) DeleteSample(ctx context.Context, req *DeleteSampleRequest) (*Receipt, error) {
	return call[Receipt](ctx, c, http.MethodDelete, "/v1/models/"+seg(req.Model)+"/samples/"+seg(req.ID), nil, "")
}

// DeleteSamples unlearns several samples in one transaction.
func (c *Client) DeleteSamples(ctx context.Context, req *DeleteSamplesRequest) (*DeleteSamplesResponse, error) {
	return call[DeleteSamplesResponse](ctx, c, http.MethodPost, "/v1/models/"+seg(req.Model)+"/deletions", req, "")
}

// GetReceipt reads a deletion receipt back.
func (c *Client) GetReceipt(ctx context.Context, req *GetReceiptRequest) (*Receipt, error) {
	return call[Receipt](ctx, c, http.MethodGet, "/v1/deletions/"+seg(req.ID), nil, "")
}

// DeleteBackbone deletes a backbone that no model uses.
func (c *Client) DeleteBackbone(ctx context.Context, req *DeleteBackboneRequest) (*DeleteBackboneResponse, error) {
	return call[DeleteBackboneResponse](ctx, c, http.MethodDelete, "/v1/backbones/"+seg(req.Name), nil, "")
}

// ListReceipts returns a page of a model's deletion receipts in ledger order (see
// ListReceiptsRequest; AllReceipts reads them all).
func (c *Client) ListReceipts(ctx context.Context, req *ListReceiptsRequest) (*ListReceiptsResponse, error) {
	path := "/v1/models/" + seg(req.Model) + "/deletions"
	q := url.Values{}
	if req.After > 0 {
		q.Set("after", strconv.FormatInt(req.After, 10))
	}
	if req.Limit > 0 {
		q.Set("limit", strconv.Itoa(req.Limit))
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return call[ListReceiptsResponse](ctx, c, http.MethodGet, path, nil, "")
}

// AllReceipts returns every deletion receipt of a model in ledger order, reading the pages of
// ListReceipts one after the other.
func (c *Client) AllReceipts(ctx context.Context, model string) ([]Receipt, error) {
	var out []Receipt
	req := &ListReceiptsRequest{Model: model, Limit: MaxReceiptsPage}
	for {
		page, err := c.ListReceipts(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Receipts...)
		if page.Next == 0 {
			return out, nil
		}
		if page.Next <= req.After {
			return nil, fmt.Errorf("api: receipts of %q: the page after %d names %d next", model, req.After, page.Next)
		}
		req.After = page.Next
	}
}
