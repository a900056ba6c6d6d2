package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// Backbones live in the blob store: backbones/NAME/model.onnx and backbones/NAME/backbone.json
// (the api.Backbone without its runtime status). The JSON is written last, so a backbone
// exists exactly when its JSON does.
const backbonePrefix = "backbones/"

func backboneModelKey(name string) string { return training.BackboneKey(name) }
func backboneMetaKey(name string) string  { return backbonePrefix + name + "/backbone.json" }

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// checkName validates a backbone or model name (it appears in URLs and blob keys, which may not
// hold "..": a model so named could never publish a checkpoint).
func checkName(what, name string) error {
	if !namePattern.MatchString(name) || strings.Contains(name, "..") {
		return invalidf("%s name %q: want 1-63 of a-z 0-9 . _ -, starting with a letter or digit, without \"..\"", what, name)
	}
	return nil
}

func (s *Server) registerBackbonePath(c echo.Context) error {
	var req api.RegisterBackboneRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := checkName("backbone", req.Name); err != nil {
		return err
	}
	if !s.cfg.AllowPaths {
		return &statusError{status: http.StatusForbidden, body: &api.Error{Code: api.CodeForbidden, Message: "this server does not read backbones from paths; upload the file with PUT /v1/backbones/{name}"}}
	}
	if req.Path == "" {
		return invalidf("path is required (or upload the file with PUT /v1/backbones/{name})")
	}
	ctx := c.Request().Context()
	data, err := readBackboneFile(ctx, req.Path, s.cfg.MaxUploadBytes)
	if err != nil {
		return err
	}
	b, err := s.registerBackbone(ctx, req.Name, data)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, b)
}

// readBackboneFile reads the ONNX file a backbone is registered from by path: a regular file
// (not a directory, device, FIFO or socket: 400) of at most limit bytes, the cap of the upload
// route (413 too_large beyond it). The file is read through a limited reader, so one that grows
// after the size check cannot exceed the cap either (nor can a file whose size says nothing, as
// in /proc), and the read stops when ctx ends.
func readBackboneFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, invalidf("backbone file: %v", err)
	}
	if err := checkBackboneFile(path, fi, limit); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should path have been replaced by a FIFO since the Stat, opening it does not
	// wait for a writer; the open file is checked again below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, invalidf("backbone file: %v", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("backbone file %s: %w", path, err)
	}
	if err := checkBackboneFile(path, fi, limit); err != nil {
		return nil, err
	}
	data, err := readLimited(ctx, f, fi.Size(), limit)
	if errors.Is(err, errOverLimit) {
		return nil, backboneTooLarge("backbone file %s grew past this server's upload limit of %d bytes while it was read", path, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("read backbone file %s: %w", path, err)
	}
	return data, nil
}

var errOverLimit = errors.New("over the limit")

// readLimited reads r to its end, expecting size bytes: errOverLimit as soon as it has read more
// than limit, so that memory stays bounded whatever r holds, and ctx's error once ctx ends.
func readLimited(ctx context.Context, r io.Reader, size, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(min(size, limit)) + bytes.MinRead) // the size and room to see EOF (or more)
	if _, err := buf.ReadFrom(&ctxReader{ctx: ctx, r: io.LimitReader(r, limit+1)}); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, errOverLimit
	}
	return buf.Bytes(), nil
}

// checkBackboneFile refuses what registerBackbonePath must not read: anything but a regular
// file, or one over limit bytes.
func checkBackboneFile(path string, fi os.FileInfo, limit int64) error {
	if !fi.Mode().IsRegular() {
		return invalidf("backbone file %s is %s, not a regular file; give the path of an ONNX file", path, fileKind(fi.Mode()))
	}
	if fi.Size() > limit {
		return backboneTooLarge("backbone file %s has %d bytes, over this server's upload limit of %d bytes", path, fi.Size(), limit)
	}
	return nil
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// backboneTooLarge is the 413 too_large of a backbone file over the upload limit: the same
// status and code as an upload over it (PUT /v1/backbones/{name}).
func backboneTooLarge(format string, args ...any) error {
	return &statusError{status: http.StatusRequestEntityTooLarge, body: &api.Error{Code: api.CodeTooLarge, Message: fmt.Sprintf(format, args...)}}
}

// ctxReader reads r until ctx ends, at most readChunk bytes a call so that it checks ctx often.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

const readChunk = 1 << 20

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > readChunk {
		p = p[:readChunk]
	}
	return c.r.Read(p)
}

func (s *Server) uploadBackbone(c echo.Context) error {
	name := param(c, "name")
	if err := checkName("backbone", name); err != nil {
		return err
	}
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return fmt.Errorf("read backbone upload: %w", err)
	}
	b, err := s.registerBackbone(c.Request().Context(), name, data)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, b)
}

// registerBackbone parses and inspects an ONNX file and stores it. Registering the same bytes
// under the same name again is an idempotent success; other bytes under a used name conflict.
func (s *Server) registerBackbone(ctx context.Context, name string, data []byte) (*api.Backbone, error) {
	sum := sha256.Sum256(data)
	b := &api.Backbone{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), CreatedAt: time.Now().UTC()}
	if old, done, err := s.registered(ctx, b); done {
		return old, err
	}
	m, err := backbone.LoadBytes(data)
	if err != nil {
		return nil, invalidf("backbone %q: %v", name, err)
	}
	if b.Info, err = json.Marshal(m.Inspect()); err != nil {
		return nil, fmt.Errorf("backbone %q: encode info: %w", name, err)
	}
	if man, err := backbone.DetectManifest(m); err != nil {
		b.ManifestError = err.Error()
	} else if b.Manifest, err = json.Marshal(man); err != nil {
		return nil, fmt.Errorf("backbone %q: encode manifest: %w", name, err)
	}
	meta, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("backbone %q: %w", name, err)
	}
	// Parsed without the lock; checked again and written under it, the file first, so that a
	// crash half-way leaves no listed backbone without its file.
	defer s.lockBackbone(name)()
	if old, done, err := s.registered(ctx, b); done {
		return old, err
	}
	if err := s.cfg.Blobs.Put(ctx, backboneModelKey(name), data); err != nil {
		return nil, fmt.Errorf("backbone %q: store model: %w", name, err)
	}
	if err := s.cfg.Blobs.Put(ctx, backboneMetaKey(name), meta); err != nil {
		return nil, fmt.Errorf("backbone %q: store metadata: %w", name, err)
	}
	s.log.Info("backbone registered", "backbone", name, "bytes", len(data), "sha256", b.SHA256, "manifest", b.ManifestError == "")
	return b, nil
}

// registered reports whether backbone b's name is taken (done): by the same bytes, the
// earlier registration is returned (an idempotent success); by other bytes, a conflict.
func (s *Server) registered(ctx context.Context, b *api.Backbone) (old *api.Backbone, done bool, err error) {
	old, err = s.loadBackbone(ctx, b.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, true, err
	case old.SHA256 != b.SHA256:
		return nil, true, fmt.Errorf("backbone %q is registered with other contents: %w", b.Name, store.ErrConflict)
	}
	return old, true, nil
}

// loadBackbone reads a backbone's stored metadata (store.ErrNotFound when unknown).
func (s *Server) loadBackbone(ctx context.Context, name string) (*api.Backbone, error) {
	data, err := s.cfg.Blobs.Get(ctx, backboneMetaKey(name))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("backbone %q: %w", name, store.ErrNotFound)
		}
		return nil, fmt.Errorf("backbone %q: %w", name, err)
	}
	var b api.Backbone
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("backbone %q: decode metadata: %w", name, err)
	}
	return &b, nil
}

func (s *Server) listBackbones(c echo.Context) error {
	ctx := c.Request().Context()
	keys, err := s.cfg.Blobs.List(ctx, backbonePrefix)
	if err != nil {
		return fmt.Errorf("list backbones: %w", err)
	}
	out := api.ListBackbonesResponse{Backbones: []api.Backbone{}}
	for _, k := range keys {
		name, ok := strings.CutSuffix(strings.TrimPrefix(k, backbonePrefix), "/backbone.json")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		b, err := s.loadBackbone(ctx, name)
		if err != nil {
			return err
		}
		b.Info, b.Manifest = nil, nil
		out.Backbones = append(out.Backbones, *b)
	}
	slices.SortFunc(out.Backbones, func(a, b api.Backbone) int { return strings.Compare(a.Name, b.Name) })
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getBackbone(c echo.Context) error {
	ctx := c.Request().Context()
	b, err := s.loadBackbone(ctx, param(c, "name"))
	if err != nil {
		return err
	}
	b.Runtime = s.runtime(ctx, b)
	return c.JSON(http.StatusOK, b)
}

// deleteBackbone removes a backbone that no model uses (409 otherwise): its metadata first, so
// that a crash half-way leaves no listed backbone without its file.
//
// A replica beside this server may create a model on it meanwhile: the models are checked
// again once the metadata is gone (which that creation checks for after its insert), and the
// metadata is put back if one uses it.
func (s *Server) deleteBackbone(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	defer s.lockBackbone(name)()
	meta, err := s.cfg.Blobs.Get(ctx, backboneMetaKey(name))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("backbone %q: %w", name, store.ErrNotFound)
		}
		return fmt.Errorf("delete backbone %q: %w", name, err)
	}
	if err := s.unused(ctx, name); err != nil {
		return err
	}
	if err := s.cfg.Blobs.Delete(ctx, backboneMetaKey(name)); err != nil {
		return fmt.Errorf("delete backbone %q: %w", name, err)
	}
	if err := s.unused(ctx, name); err != nil {
		// Not on the request's context: a client gone now must not leave the backbone unlisted.
		if perr := s.cfg.Blobs.Put(context.WithoutCancel(ctx), backboneMetaKey(name), meta); perr != nil {
			return fmt.Errorf("delete backbone %q: put its metadata back: %w (after: %w)", name, perr, err)
		}
		return err
	}
	if err := s.cfg.Blobs.Delete(ctx, backboneModelKey(name)); err != nil {
		return fmt.Errorf("delete backbone %q: %w", name, err)
	}
	s.mu.Lock()
	if e := s.sessions[name]; e != nil && e.sess != nil {
		if err := e.sess.Close(); err != nil {
			s.log.Warn("close backbone session", "backbone", name, "err", err)
		}
	}
	delete(s.sessions, name)
	s.mu.Unlock()
	s.log.Info("backbone deleted", "backbone", name)
	return c.JSON(http.StatusOK, api.DeleteBackboneResponse{Name: name, Deleted: true})
}

// unused returns a conflict when a model uses backbone name.
func (s *Server) unused(ctx context.Context, name string) error {
	models, err := s.cfg.Store.ListModels(ctx)
	if err != nil {
		return fmt.Errorf("delete backbone %q: %w", name, err)
	}
	for _, m := range models {
		spec, err := modelSpec(m)
		if err != nil {
			return err
		}
		if spec.Backbone == name {
			return fmt.Errorf("backbone %q is used by model %q: %w", name, m.Name, store.ErrConflict)
		}
	}
	return nil
}

// runtime returns the ONNX Runtime status of a backbone, opening (once) and caching a session.
// A missing library or a failing session is reported in the status, not as a request error.
func (s *Server) runtime(ctx context.Context, b *api.Backbone) *api.Runtime {
	if s.cfg.DisableRuntime {
		return &api.Runtime{Error: "ONNX Runtime disabled on this server"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sessions[b.Name]
	if !ok || e.sha != b.SHA256 {
		e = &runtimeEntry{sha: b.SHA256}
		data, err := s.cfg.Blobs.Get(ctx, backboneModelKey(b.Name))
		if err == nil {
			e.sess, err = ort.NewSession(data, ort.WithLogger(s.log))
		}
		if err != nil {
			e.err = err
			s.log.Warn("backbone session unavailable", "backbone", b.Name, "err", err)
		}
		s.sessions[b.Name] = e
	}
	if e.err != nil {
		return &api.Runtime{Error: e.err.Error()}
	}
	st := e.sess.Status()
	return &api.Runtime{Provider: string(st.Provider), Requested: string(st.Requested), Fallback: st.Fallback}
}

// decodeJSON decodes a JSON request body strictly (unknown fields are errors).
func decodeJSON(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return invalidf("request body: %v", err)
	}
	if dec.More() {
		return invalidf("request body: more than one JSON value")
	}
	return nil
}
