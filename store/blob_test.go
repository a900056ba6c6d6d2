package store

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBlobs(t *testing.T) {
	ctx := context.Background()
	fileURL, err := DefaultBlobURL(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{fileURL, "mem://"} {
		t.Run(strings.SplitN(u, ":", 2)[0], func(t *testing.T) {
			bs, err := OpenBlobs(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			put := map[string]string{"ckpt/m/0/1": "a", "ckpt/m/0/2": "bb", "ckpt/n/0/1": "c", "cache/m/x": "d"}
			for k, v := range put {
				if err := bs.Put(ctx, k, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			if err := bs.PutStream(ctx, "stream/1", strings.NewReader("streamed")); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				prefix string
				want   []string
			}{
				{"ckpt/m/", []string{"ckpt/m/0/1", "ckpt/m/0/2"}},
				{"ckpt/", []string{"ckpt/m/0/1", "ckpt/m/0/2", "ckpt/n/0/1"}},
				{"none/", nil},
			}
			for _, tt := range tests {
				got, err := bs.List(ctx, tt.prefix)
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Errorf("List(%q) = %v, %v; want %v", tt.prefix, got, err, tt.want)
				}
			}
			if b, err := bs.Get(ctx, "ckpt/m/0/2"); err != nil || string(b) != "bb" {
				t.Errorf("Get = %q, %v", b, err)
			}
			r, err := bs.Open(ctx, "stream/1")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			buf.ReadFrom(r)
			r.Close()
			if buf.String() != "streamed" {
				t.Errorf("Open read %q", buf.String())
			}
			if _, err := bs.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(missing) = %v", err)
			}
			for _, k := range []string{"", "/abs", "a/../b"} {
				if err := bs.Put(ctx, k, nil); !errors.Is(err, ErrInvalid) {
					t.Errorf("Put(%q) = %v", k, err)
				}
			}
			if err := bs.Delete(ctx, "cache/m/x"); err != nil {
				t.Fatal(err)
			}
			if err := bs.Delete(ctx, "cache/m/x"); err != nil {
				t.Errorf("second Delete = %v, want nil", err)
			}
			if n, err := bs.DeletePrefix(ctx, "ckpt/m/"); err != nil || n != 2 {
				t.Errorf("DeletePrefix = %d, %v", n, err)
			}
			if got, _ := bs.List(ctx, ""); !reflect.DeepEqual(got, []string{"ckpt/n/0/1", "stream/1"}) {
				t.Errorf("left: %v", got)
			}
		})
	}
}

func TestBlobPurgerErasesSampleInputs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLite(t, dir)
	u, _ := DefaultBlobURL(dir)
	bs, err := OpenBlobs(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	s.OnPurge(bs.Purger())
	mustModel(t, s, spec("m", 2, 2, 1), 0)
	if err := bs.Put(ctx, "inputs/m/a", []byte("pixels")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSamples(ctx, "m", []Sample{{ID: "a", Label: "1", BlobKey: "inputs/m/a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "m", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Get(ctx, "inputs/m/a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("blob of a deleted sample readable: %v", err)
	}
	// The completed purge leaves the queue in a background commit shortly after.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := s.PendingPurges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending purges: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
