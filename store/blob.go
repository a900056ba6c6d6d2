package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file://
	_ "gocloud.dev/blob/memblob"  // mem://
	_ "gocloud.dev/blob/s3blob"   // s3:// (AWS S3 and S3-compatible servers)
	"gocloud.dev/gcerrors"
)

// BlobDir is the folder of the default file:// bucket inside a data directory.
const BlobDir = "blobs"

// DefaultBlobURL returns the file:// bucket URL under dataDir.
func DefaultBlobURL(dataDir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dataDir, BlobDir))
	if err != nil {
		return "", fmt.Errorf("store: blob url: %w", err)
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
}

// Blobs is an artifact store (checkpoints, activation caches, sample inputs) behind
// gocloud.dev/blob. It is safe for concurrent use.
type Blobs struct {
	b *blob.Bucket
	// dir is a file:// bucket's folder ("" for other buckets): see PruneEmpty.
	dir string
}

// BlobURL returns the bucket s3t uses: blobURL when set (S3T_BLOB_URL), else the file://
// bucket under dataDir.
func BlobURL(dataDir, blobURL string) (string, error) {
	if blobURL != "" {
		return blobURL, nil
	}
	return DefaultBlobURL(dataDir)
}

// OpenBlobs opens the bucket at url:
//
//   - file:///abs/dir: a folder, created if missing; writes go through a temporary file next to
//     the blob's (never in os.TempDir, which may be another file system) and a rename, so a
//     crash never leaves a half-written blob.
//   - mem://: in memory, for tests.
//   - s3://BUCKET?region=R[&endpoint=URL&use_path_style=true&disable_https=true]: Amazon S3
//     or an S3-compatible server (MinIO, Ceph, ...) through gocloud.dev/blob/s3blob and the AWS
//     SDK v2, which takes its credentials from the usual places (AWS_ACCESS_KEY_ID and
//     AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role). endpoint points at a server other
//     than AWS; use_path_style=true (or the v1 spelling s3ForcePathStyle=true) addresses
//     buckets as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT, which most such servers need.
//     An upload appears whole or not at all on S3 too.
func OpenBlobs(ctx context.Context, rawURL string) (*Blobs, error) {
	var dir string
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "file" {
		// file://dir reads dir as a host, and the path as empty; file://rel/dir as host rel and
		// path /dir, a folder at the file system's root.
		if !path.IsAbs(u.Path) || u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store: open blobs %q: %w: a file:// bucket needs an absolute path, as file:///abs/dir", rawURL, ErrInvalid)
		}
		dir = filepath.FromSlash(u.Path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("store: open blobs %q: %w", rawURL, err)
		}
		// fileblob writes each blob to a temporary file in os.TempDir and renames it into
		// place: with the folder on another file system than /tmp (a volume of its own, a
		// container's mounted volume, a tmpfs /tmp) every write failed with "invalid
		// cross-device link", and a write cut short left the blob's bytes in /tmp, where no
		// purge looks. Next to the final file, the rename stays on the folder's file system
		// and a leftover is under the key's prefix, which purges and sweeps delete.
		if q := u.Query(); q.Get("no_tmp_dir") == "" {
			q.Set("no_tmp_dir", "true")
			u.RawQuery = q.Encode()
			rawURL = u.String()
		}
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: open blobs %q: %w", rawURL, err)
	}
	return &Blobs{b: b, dir: dir}, nil
}

// Close closes the bucket.
func (bs *Blobs) Close() error { return bs.b.Close() }

func blobErr(op, key string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("store: blob %s %q: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("store: blob %s %q: %w", op, key, err)
}

func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "..") {
		return fmt.Errorf("%w: blob key %q", ErrInvalid, key)
	}
	return nil
}

// Put writes data under key, replacing any earlier blob.
func (bs *Blobs) Put(ctx context.Context, key string, data []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("store: blob put: %w", err)
	}
	if err := bs.b.WriteAll(ctx, key, data, nil); err != nil {
		return blobErr("put", key, err)
	}
	return nil
}

// PutStream writes the contents of r under key. The blob appears only when r is read to
// the end without error.
func (bs *Blobs) PutStream(ctx context.Context, key string, r io.Reader) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("store: blob put: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := bs.b.NewWriter(ctx, key, nil)
	if err != nil {
		return blobErr("put", key, err)
	}
	if _, err := io.Copy(w, r); err != nil {
		cancel() // aborts the write
		w.Close()
		return blobErr("put", key, err)
	}
	if err := w.Close(); err != nil {
		return blobErr("put", key, err)
	}
	return nil
}

// Get reads the blob under key (ErrNotFound when missing).
func (bs *Blobs) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("store: blob get: %w", err)
	}
	data, err := bs.b.ReadAll(ctx, key)
	if err != nil {
		return nil, blobErr("get", key, err)
	}
	return data, nil
}

// ModTime returns when the blob under key was last written (ErrNotFound when missing).
func (bs *Blobs) ModTime(ctx context.Context, key string) (time.Time, error) {
	if err := checkKey(key); err != nil {
		return time.Time{}, fmt.Errorf("store: blob attributes: %w", err)
	}
	a, err := bs.b.Attributes(ctx, key)
	if err != nil {
		return time.Time{}, blobErr("attributes", key, err)
	}
	return a.ModTime, nil
}

// Open returns a reader of the blob under key (ErrNotFound when missing); close it.
func (bs *Blobs) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("store: blob open: %w", err)
	}
	r, err := bs.b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, blobErr("open", key, err)
	}
	return r, nil
}

// Delete removes the blob under key. Deleting a missing blob is not an error, so purges
// can be retried.
func (bs *Blobs) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("store: blob delete: %w", err)
	}
	if err := bs.b.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return blobErr("delete", key, err)
	}
	return nil
}

// List returns the keys starting with prefix, in lexical order.
func (bs *Blobs) List(ctx context.Context, prefix string) ([]string, error) {
	it := bs.b.List(&blob.ListOptions{Prefix: prefix})
	var keys []string
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("store: blob list %q: %w", prefix, err)
		}
		keys = append(keys, obj.Key)
	}
}

// DeletePrefix removes every blob whose key starts with prefix (for example a deleted
// model's checkpoints) and returns how many it removed.
func (bs *Blobs) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" {
		return 0, fmt.Errorf("store: blob delete prefix: %w: empty prefix", ErrInvalid)
	}
	keys, err := bs.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	for i, k := range keys {
		if err := bs.Delete(ctx, k); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

// PruneEmpty removes the empty folders at and under prefix (a folder's key, as
// "models/NAME/") in a file:// bucket, whose deleted blobs leave their folders behind: a
// deleted model's would still name it, its shards, sequences and stages. A folder that holds
// a blob stays. Other buckets have no folders, and nothing is done there.
func (bs *Blobs) PruneEmpty(prefix string) error {
	if bs.dir == "" {
		return nil
	}
	// Segments, not checkKey: a model named "a..b" (names allowed it) is a prefix to prune.
	if prefix == "" || strings.HasPrefix(prefix, "/") || slices.ContainsFunc(strings.Split(prefix, "/"), func(s string) bool { return s == ".." || s == "." }) {
		return fmt.Errorf("store: blob prune: %w: prefix %q", ErrInvalid, prefix)
	}
	root := filepath.Join(bs.dir, filepath.FromSlash(strings.TrimSuffix(prefix, "/")))
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: blob prune %q: %w", prefix, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- { // a folder's subfolders come after it
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("store: blob prune %q: %w", prefix, err)
		}
	}
	return nil
}

// Purger returns a [Purger] that deletes a purged sample's blob (its BlobKey). Register it
// with [Store.OnPurge] when sample inputs live in this bucket.
func (bs *Blobs) Purger() Purger {
	return func(ctx context.Context, p Purge) error {
		if p.BlobKey == "" {
			return nil
		}
		return bs.Delete(ctx, p.BlobKey)
	}
}
