package store

import (
	"testing"

	"github.com/s3t-dev/s3t/internal/s3test"
)

// s3BucketURL returns a fresh bucket on the in-process S3 server (internal/s3test).
func s3BucketURL(t testing.TB) string { return s3test.BucketURL(t) }

// blobBackend is one bucket kind the blob tests run against.
type blobBackend struct {
	name string
	url  func(t testing.TB) string
}

// blobBackends returns a file:// bucket in a temporary directory, a mem:// bucket and a
// bucket on the in-process S3 server.
func blobBackends() []blobBackend {
	return []blobBackend{
		{"file", func(t testing.TB) string {
			u, err := DefaultBlobURL(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return u
		}},
		{"mem", func(testing.TB) string { return "mem://" }},
		{"s3", s3BucketURL},
	}
}
