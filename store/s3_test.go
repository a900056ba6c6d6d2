package store

import (
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 is one in-process S3 server (gofakes3 with its in-memory backend) on loopback,
// shared by the tests of this binary; each test gets a bucket of its own.
var fakeS3 struct {
	once    sync.Once
	srv     *httptest.Server
	backend *s3mem.Backend
}

// s3BucketURL starts the in-process S3 server on first use, creates a fresh bucket and
// returns its s3:// URL (path-style addressing, plain HTTP, static test credentials).
func s3BucketURL(t testing.TB) string {
	t.Helper()
	fakeS3.once.Do(func() {
		fakeS3.backend = s3mem.New()
		faker := gofakes3.New(fakeS3.backend, gofakes3.WithAutoBucket(false))
		fakeS3.srv = httptest.NewServer(faker.Server()) // 127.0.0.1, random port
	})
	// The AWS SDK reads credentials from the environment; gofakes3 does not check them.
	t.Setenv("AWS_ACCESS_KEY_ID", "s3t-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3t-test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	bucket := "s3t-" + uniqueName("b")
	if err := fakeS3.backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	q := url.Values{}
	q.Set("endpoint", fakeS3.srv.URL)
	q.Set("region", "us-east-1")
	q.Set("use_path_style", "true")
	q.Set("disable_https", "true")
	return "s3://" + bucket + "?" + q.Encode()
}

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
