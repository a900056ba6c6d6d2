package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testcert"
	"github.com/s3t-dev/s3t/server"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key (testcert.Write).
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	cert, err := testcert.Write(certFile, keyFile, serial)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// lockedBuffer is a bytes.Buffer safe for the server's log writes beside the test's reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeTLS: a server given TLSFiles speaks HTTPS (HTTP/2 offered) to a client that trusts
// its certificate, with API keys as over plain HTTP, and refuses plain HTTP; a certificate
// renewed in place is served from the next connection on, and a renewal that does not load
// leaves the last good certificate served, said once in the log.
func TestServeTLS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := server.TLSFiles(certFile, keyFile, log)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, server.Config{TLS: cfg, Logger: log}, map[string][]api.Scope{"s3cret": {api.ScopeAdmin}})
	addr := strings.TrimPrefix(ts.URL, "http://")
	roots := x509.NewCertPool()
	roots.AddCert(first)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	c, err := api.NewClient("https://"+addr, api.WithAPIKey("s3cret"), api.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListModels(ctx, &api.ListModelsRequest{}); err != nil {
		t.Fatalf("list models over HTTPS: %v", err)
	}
	resp, err := hc.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("GET /healthz over HTTPS: %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	anon, err := api.NewClient("https://"+addr, api.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = anon.ListModels(ctx, &api.ListModelsRequest{})
	wantError(t, err, http.StatusUnauthorized, api.CodeUnauthorized)
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}

	// A TCP probe (a load balancer's check, a scanner) fails its handshake: logged at debug, not
	// at warn once a connection as it was.
	probe, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "TLS handshake error"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no handshake error logged for a probe:\n%s", logs.String())
		}
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "TLS handshake error") && !strings.Contains(l, "level=DEBUG") {
			t.Errorf("a probe's handshake error logged above debug: %s", l)
		}
	}
	// The certificate's expiry is on /metrics.
	mresp, err := hc.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	var expiry float64
	for _, l := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(l, "s3t_tls_certificate_expiry_timestamp_seconds "); ok {
			expiry, _ = strconv.ParseFloat(v, 64)
		}
	}
	if want := float64(first.NotAfter.Unix()); expiry != want {
		t.Errorf("s3t_tls_certificate_expiry_timestamp_seconds %v, want %v", expiry, want)
	}

	served := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := served(); got != 1 {
		t.Fatalf("serial %d served, want 1", got)
	}
	// Renewed in place: the next connection gets the new certificate.
	roots.AddCert(writeCert(t, certFile, keyFile, 2))
	if got := served(); got != 2 {
		t.Fatalf("after the renewal, serial %d served, want 2", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate loaded again") {
		t.Errorf("the reload is not logged:\n%s", logs.String())
	}
	// A renewal that does not load (a key that is not PEM): the last good pair, logged once.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := served(); got != 2 {
			t.Fatalf("after a broken renewal, serial %d served, want 2", got)
		}
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Errorf("a broken renewal logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestTLSFilesRefusesBadPairs: TLSFiles fails at once, naming the files, for a missing file or
// a key that is not the certificate's.
func TestTLSFilesRefusesBadPairs(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	otherCert, otherKey := filepath.Join(dir, "other.pem"), filepath.Join(dir, "other-key.pem")
	writeCert(t, certFile, keyFile, 1)
	writeCert(t, otherCert, otherKey, 2)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"no key file", certFile, filepath.Join(dir, "nope.pem"), "nope.pem"},
		{"no cert file", filepath.Join(dir, "nope.pem"), keyFile, "nope.pem"},
		{"another's key", certFile, otherKey, "private key does not match public key"},
		{"key missing", certFile, "", "both a certificate file and a key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := server.TLSFiles(tc.cert, tc.key, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("TLSFiles = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
