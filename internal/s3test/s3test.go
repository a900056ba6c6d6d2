// Package s3test runs an in-process S3 server (gofakes3 with its in-memory backend) on
// loopback for tests: each caller gets a bucket of its own, addressed by an s3:// URL that
// store.OpenBlobs understands.
package s3test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// server is the one S3 server of a test binary.
var server struct {
	once    sync.Once
	srv     *httptest.Server
	backend *s3mem.Backend
}

// Credentials are the static credentials the AWS SDK is given (gofakes3 does not check them);
// a process that opens a bucket of this server needs them in its environment (see Env).
var Credentials = map[string]string{
	"AWS_ACCESS_KEY_ID":         "s3t-test",
	"AWS_SECRET_ACCESS_KEY":     "s3t-test-secret",
	"AWS_EC2_METADATA_DISABLED": "true",
}

// Env returns Credentials as KEY=VALUE lines, for a child process's environment.
func Env() []string {
	var out []string
	for k, v := range Credentials {
		out = append(out, k+"="+v)
	}
	return out
}

// BucketURL starts the server on first use, creates a fresh bucket and returns its s3:// URL
// (path-style addressing, plain HTTP). It sets the credentials in this process's environment
// for the test.
func BucketURL(t testing.TB) string {
	t.Helper()
	for k, v := range Credentials {
		t.Setenv(k, v)
	}
	u, err := NewBucket()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// NewBucket starts the server on first use, creates a fresh bucket and returns its s3:// URL.
// The caller provides the credentials (Env) to whatever opens it.
func NewBucket() (string, error) {
	server.once.Do(func() {
		server.backend = s3mem.New()
		faker := gofakes3.New(server.backend, gofakes3.WithAutoBucket(false))
		server.srv = httptest.NewServer(faker.Server()) // 127.0.0.1, random port
	})
	var b [6]byte
	rand.Read(b[:])
	bucket := "s3t-" + hex.EncodeToString(b[:])
	if err := server.backend.CreateBucket(bucket); err != nil {
		return "", err
	}
	q := url.Values{}
	q.Set("endpoint", server.srv.URL)
	q.Set("region", "us-east-1")
	q.Set("use_path_style", "true")
	q.Set("disable_https", "true")
	return "s3://" + bucket + "?" + q.Encode(), nil
}
