package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBlobs(t *testing.T) {
	ctx := context.Background()
	for _, bb := range blobBackends() {
		t.Run(bb.name, func(t *testing.T) {
			bs, err := OpenBlobs(ctx, bb.url(t))
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

// errReader returns its data, then an error instead of EOF.
type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("upload interrupted")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestBlobPutStreamIsAtomic: an upload whose reader fails leaves no blob and keeps an
// earlier one intact, on every kind of bucket.
func TestBlobPutStreamIsAtomic(t *testing.T) {
	ctx := context.Background()
	for _, bb := range blobBackends() {
		t.Run(bb.name, func(t *testing.T) {
			bs, err := OpenBlobs(ctx, bb.url(t))
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			// Larger than one S3 upload part (5 MiB), so the S3 upload is a multipart one.
			big := bytes.Repeat([]byte("x"), 12<<20)
			if err := bs.PutStream(ctx, "ckpt/new", &errReader{big}); err == nil {
				t.Fatal("PutStream of a failing reader succeeded")
			}
			if _, err := bs.Get(ctx, "ckpt/new"); !errors.Is(err, ErrNotFound) {
				t.Errorf("half-written blob readable: %v", err)
			}
			if err := bs.Put(ctx, "ckpt/old", []byte("old")); err != nil {
				t.Fatal(err)
			}
			if err := bs.PutStream(ctx, "ckpt/old", &errReader{big}); err == nil {
				t.Fatal("PutStream of a failing reader succeeded")
			}
			if b, err := bs.Get(ctx, "ckpt/old"); err != nil || string(b) != "old" {
				t.Errorf("after a failed overwrite: %q, %v", b, err)
			}
			if got, err := bs.List(ctx, ""); err != nil || !reflect.DeepEqual(got, []string{"ckpt/old"}) {
				t.Errorf("List = %v, %v", got, err)
			}
			// The same upload read to the end succeeds.
			if err := bs.PutStream(ctx, "ckpt/new", bytes.NewReader(big)); err != nil {
				t.Fatal(err)
			}
			if b, err := bs.Get(ctx, "ckpt/new"); err != nil || !bytes.Equal(b, big) {
				t.Errorf("Get after a whole upload: %d bytes, %v", len(b), err)
			}
		})
	}
}

func TestBlobPurgerErasesSampleInputs(t *testing.T) {
	for _, bb := range blobBackends() {
		for _, db := range backends(t) {
			t.Run(db.name+"/"+bb.name, func(t *testing.T) { testBlobPurger(t, db.open(t), bb.url(t)) })
		}
	}
}

func testBlobPurger(t *testing.T, s *Store, u string) {
	ctx := context.Background()
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

// TestOpenBlobsRelativeFileURL: file://dir names a host and no path; it is refused with a
// message that says what to write, rather than "mkdir : no such file or directory".
func TestOpenBlobsRelativeFileURL(t *testing.T) {
	// file://rel/dir made /dir at the file system's root (an operator walkthrough).
	for _, u := range []string{"file://relblobs", "file:relblobs", "file://relative/s3t-blobs-test"} {
		if _, err := OpenBlobs(context.Background(), u); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "file:///abs/dir") {
			t.Errorf("OpenBlobs(%q) = %v, want ErrInvalid naming the absolute form", u, err)
		}
	}
}

// TestBlobPruneEmpty: on a file:// bucket, deleting a model's blobs left its folders behind,
// naming the model and its layout; PruneEmpty removes the empty ones and keeps any that holds
// a blob. On the other buckets it does nothing and fails nothing.
func TestBlobPruneEmpty(t *testing.T) {
	ctx := context.Background()
	for _, bb := range blobBackends() {
		t.Run(bb.name, func(t *testing.T) {
			bs, err := OpenBlobs(ctx, bb.url(t))
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			gone := []string{"models/m/checkpoints/shard-0/seq-0/gen-1/stage-1/ck", "models/m/checkpoints/shard-1/seq-0/gen-1/stage-2/ck"}
			kept := "models/m/checkpoints/shard-1/seq-1/gen-2/stage-1/ck" // written after the purge began
			for _, k := range append(gone, kept, "models/other/x") {
				if err := bs.Put(ctx, k, []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range gone {
				if err := bs.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			if err := bs.PruneEmpty("models/m/"); err != nil {
				t.Fatal(err)
			}
			if keys, err := bs.List(ctx, "models/"); err != nil || !reflect.DeepEqual(keys, []string{kept, "models/other/x"}) {
				t.Fatalf("after pruning: %v, %v", keys, err)
			}
			if bs.dir != "" {
				var dirs []string
				filepath.WalkDir(filepath.Join(bs.dir, "models"), func(p string, d fs.DirEntry, err error) error {
					if err == nil && d.IsDir() {
						rel, _ := filepath.Rel(bs.dir, p)
						dirs = append(dirs, filepath.ToSlash(rel))
					}
					return nil
				})
				want := []string{"models", "models/m", "models/m/checkpoints", "models/m/checkpoints/shard-1", "models/m/checkpoints/shard-1/seq-1",
					"models/m/checkpoints/shard-1/seq-1/gen-2", "models/m/checkpoints/shard-1/seq-1/gen-2/stage-1", "models/other"}
				if !reflect.DeepEqual(dirs, want) {
					t.Fatalf("folders after pruning:\n%v\nwant\n%v", dirs, want)
				}
			}
			// The last blob gone, the model's folder goes too; a prefix never seen is no error.
			if err := bs.Delete(ctx, kept); err != nil {
				t.Fatal(err)
			}
			// "a..b" was a model name the server took: its purge must prune, not fail for good.
			for _, prefix := range []string{"models/m/", "models/never/", "models/a..b/"} {
				if err := bs.PruneEmpty(prefix); err != nil {
					t.Fatal(err)
				}
			}
			if bs.dir != "" {
				if _, err := os.Stat(filepath.Join(bs.dir, "models", "m")); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("the emptied model's folder: %v", err)
				}
			}
			if err := bs.PruneEmpty("../x"); !errors.Is(err, ErrInvalid) && bs.dir != "" {
				t.Fatalf("PruneEmpty(../x) = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestFileBlobsWriteOnTheirOwnFileSystem: a file:// bucket wrote each blob to a temporary file
// in os.TempDir and renamed it into place, so with the data directory on another file system
// than /tmp (a volume of its own, a container's volume) every backbone registration and
// checkpoint failed with "invalid cross-device link". TMPDIR pointing at a folder that does not
// exist stands in for that: no write may go through it.
func TestFileBlobsWriteOnTheirOwnFileSystem(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", filepath.Join(dir, "no-such-tmp"))
	ctx := context.Background()
	for _, u := range []string{"file://" + filepath.ToSlash(filepath.Join(dir, "blobs")), "file://" + filepath.ToSlash(filepath.Join(dir, "blobs2")) + "?metadata=skip"} {
		bs, err := OpenBlobs(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if err := bs.Put(ctx, "backbones/vit/model.onnx", []byte("onnx")); err != nil {
			t.Fatalf("%s: put: %v", u, err)
		}
		if err := bs.PutStream(ctx, "models/m/checkpoints/x.safetensors", strings.NewReader("ckpt")); err != nil {
			t.Fatalf("%s: put stream: %v", u, err)
		}
		keys, err := bs.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"backbones/vit/model.onnx", "models/m/checkpoints/x.safetensors"}; !slices.Equal(keys, want) {
			t.Fatalf("%s: keys %q, want %q (no temporary file left)", u, keys, want)
		}
		bs.Close()
	}
}
