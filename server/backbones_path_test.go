//go:build unix

package server_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// TestRegisterBackbonePathChecks: a backbone registered from a server path must be a regular
// file within the upload limit. Directories, devices (/dev/zero once grew the server to 5 GB)
// and FIFOs (whose open would wait for a writer) are refused at once, a file over the limit is
// 413 too_large like an upload over it, and nothing is stored for any of them.
func TestRegisterBackbonePathChecks(t *testing.T) {
	vit := assets.ViTFashionMNIST()
	const limit = 1 << 20 // above the ViT's 613 KB
	if len(vit) > limit {
		t.Fatalf("the ViT has %d bytes, over the test's limit %d", len(vit), limit)
	}
	ts := startServer(t, server.Config{AllowPaths: true, DisableRuntime: true, MaxUploadBytes: limit}, nil)
	c := ts.client(t, "")
	dir := t.TempDir()
	good := filepath.Join(dir, "vit.onnx")
	if err := os.WriteFile(good, vit, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.onnx")
	if err := os.WriteFile(big, bytes.Repeat([]byte{1}, limit+1), 0o600); err != nil {
		t.Fatal(err)
	}
	exact := filepath.Join(dir, "exact.onnx") // at the limit: read, then refused as not ONNX
	if err := os.WriteFile(exact, bytes.Repeat([]byte{1}, limit), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		status     int
		code, msg  string
	}{
		{"directory", dir, http.StatusBadRequest, api.CodeInvalid, "is a directory, not a regular file"},
		{"device", "/dev/zero", http.StatusBadRequest, api.CodeInvalid, "/dev/zero is a character device, not a regular file"},
		{"fifo", fifo, http.StatusBadRequest, api.CodeInvalid, "is a named pipe (FIFO), not a regular file"},
		{"missing", filepath.Join(dir, "nope.onnx"), http.StatusBadRequest, api.CodeInvalid, "no such file"},
		{"too large", big, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "has 1048577 bytes, over this server's upload limit of 1048576 bytes"},
		{"at the limit", exact, http.StatusBadRequest, api.CodeInvalid, "backbone \"at-the-limit\""},
		{"good", good, http.StatusCreated, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.path); tt.name == "device" && err != nil {
				t.Skipf("no %s: %v", tt.path, err)
			}
			// A FIFO or device that were opened or read would hang or grow past this.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			name := strings.ReplaceAll(tt.name, " ", "-")
			b, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: name, Path: tt.path})
			if tt.status == http.StatusCreated {
				if err != nil || b.Size != int64(len(vit)) {
					t.Fatalf("register %s = %+v, %v; want the ViT's %d bytes", tt.path, b, err, len(vit))
				}
				return
			}
			e := wantError(t, err, tt.status, tt.code)
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message %q lacks %q", e.Message, tt.msg)
			}
		})
	}
	list, err := c.ListBackbones(context.Background(), &api.ListBackbonesRequest{})
	if err != nil || len(list.Backbones) != 1 || list.Backbones[0].Name != "good" {
		t.Fatalf("backbones after the refusals = %+v, %v; want only \"good\"", list, err)
	}
}
