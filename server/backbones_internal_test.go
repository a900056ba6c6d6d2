package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
)

// TestReadBackboneFile covers what the HTTP test cannot make happen on cue: a regular file whose
// size says less than it holds (as a file growing during the read, or one in /proc, whose size is
// 0) is cut by the limited reader at the limit, and a request that ends stops the read.
func TestReadBackboneFile(t *testing.T) {
	small := filepath.Join(t.TempDir(), "small")
	if err := os.WriteFile(small, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name, path string
		ctx        context.Context
		limit      int64
		status     int
		msg        string
		cause      error
	}{
		{"fits", small, context.Background(), 10, 0, "", nil},
		{"over by one", small, context.Background(), 9, http.StatusRequestEntityTooLarge, "has 10 bytes, over this server's upload limit of 9 bytes", nil},
		{"size 0, holds more", "/proc/self/maps", context.Background(), 16, http.StatusRequestEntityTooLarge, "grew past this server's upload limit of 16 bytes while it was read", nil},
		{"request ended", small, cancelled, 10, 0, "read backbone file", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if fi, err := os.Stat(tt.path); err != nil || !fi.Mode().IsRegular() || (tt.path != small && fi.Size() != 0) {
				t.Skipf("%s is not a regular file of size 0 here (%v, %v)", tt.path, fi, err)
			}
			data, err := readBackboneFile(tt.ctx, tt.path, tt.limit)
			switch {
			case tt.cause != nil:
				if !errors.Is(err, tt.cause) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want %v with %q", err, tt.cause, tt.msg)
				}
			case tt.status != 0:
				status, body := toAPIError(err)
				if status != tt.status || body.Code != api.CodeTooLarge || !strings.Contains(body.Message, tt.msg) {
					t.Fatalf("err = %v (%d %+v), want %d with %q", err, status, body, tt.status, tt.msg)
				}
			default:
				if err != nil || string(data) != "0123456789" {
					t.Fatalf("read = %q, %v", data, err)
				}
			}
		})
	}
}

// bottomless is a reader without end (like /dev/zero) that fails once more than max bytes were
// read from it: a reader of it that does not stop at its limit gets that error.
type bottomless struct{ read, max int }

func (b *bottomless) Read(p []byte) (int, error) {
	if b.read > b.max {
		return 0, fmt.Errorf("read %d bytes of a bottomless file, past %d", b.read, b.max)
	}
	b.read += len(p)
	return len(p), nil
}

// TestReadLimited: the read stops right past the limit, whatever the file's size said.
func TestReadLimited(t *testing.T) {
	tests := []struct {
		name        string
		size, limit int64
	}{
		{"size 0", 0, 1000},
		{"size at the limit", 1000, 1000},
		{"limit of 1 MiB", 0, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &bottomless{max: int(tt.limit) + readChunk}
			if data, err := readLimited(context.Background(), r, tt.size, tt.limit); !errors.Is(err, errOverLimit) || data != nil {
				t.Fatalf("readLimited = %d bytes, %v; want errOverLimit", len(data), err)
			}
			if int64(r.read) > tt.limit+readChunk {
				t.Errorf("read %d bytes for a limit of %d", r.read, tt.limit)
			}
		})
	}
}
