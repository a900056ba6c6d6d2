package server

import (
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

// checkName validates a backbone or model name (it appears in URLs and blob keys).
func checkName(what, name string) error {
	if !namePattern.MatchString(name) {
		return invalidf("%s name %q: want 1-63 of a-z 0-9 . _ -, starting with a letter or digit", what, name)
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
		return &statusError{http.StatusForbidden, &api.Error{Code: api.CodeForbidden, Message: "this server does not read backbones from paths; upload the file with PUT /v1/backbones/{name}"}}
	}
	if req.Path == "" {
		return invalidf("path is required (or upload the file with PUT /v1/backbones/{name})")
	}
	data, err := os.ReadFile(req.Path)
	if err != nil {
		return invalidf("read %s: %v", req.Path, err)
	}
	b, err := s.registerBackbone(c.Request().Context(), req.Name, data)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, b)
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
	if old, err := s.loadBackbone(ctx, name); err == nil {
		if old.SHA256 != b.SHA256 {
			return nil, fmt.Errorf("backbone %q is registered with other contents: %w", name, store.ErrConflict)
		}
		return old, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
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
	if err := s.cfg.Blobs.Put(ctx, backboneModelKey(name), data); err != nil {
		return nil, fmt.Errorf("backbone %q: store model: %w", name, err)
	}
	if err := s.cfg.Blobs.Put(ctx, backboneMetaKey(name), meta); err != nil {
		return nil, fmt.Errorf("backbone %q: store metadata: %w", name, err)
	}
	s.log.Info("backbone registered", "backbone", name, "bytes", len(data), "sha256", b.SHA256, "manifest", b.ManifestError == "")
	return b, nil
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
func (s *Server) deleteBackbone(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	if _, err := s.loadBackbone(ctx, name); err != nil {
		return err
	}
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
	for _, key := range []string{backboneMetaKey(name), backboneModelKey(name)} {
		if err := s.cfg.Blobs.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete backbone %q: %w", name, err)
		}
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
