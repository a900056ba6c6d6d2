package cli

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/internal/testcert"
)

// TestServeTLSProcess: s3t serve --tls-cert --tls-key serves HTTPS, and says so in its log; a
// pair that does not load fails the start (exit 1, naming the flags) before the data directory
// is made.
func TestServeTLSProcess(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, err := testcert.Write(certFile, keyFile, 7)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	_, stderr, code := run(t, "serve", "--addr", "127.0.0.1:0", "--data", data, "--tls-cert", certFile, "--tls-key", certFile)
	if code != 1 || !strings.Contains(stderr, "--tls-cert, --tls-key") {
		t.Errorf("serve with a certificate as its own key: exit %d, stderr %q; want exit 1 naming the flags", code, stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a failed TLS start made the data directory (%v)", err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "addr")
	log := &syncBuf{}
	cmd := exec.Command(exe, "serve", "--addr", "127.0.0.1:0", "--addr-file", addrFile, "--data", data, "--train-workers", "0",
		"--tls-cert", certFile, "--tls-key", keyFile)
	cmd.Env = append(os.Environ(), "S3T_TEST_AS_CLI=1", "S3T_KEYS=")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr, err := waitAddrFile(addrFile, done, 60*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	var resp *http.Response
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = hc.Get("https://" + addr + "/healthz"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("GET /healthz over HTTPS: %v\n%s", err, log)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("GET /healthz: %d (TLS %v)", resp.StatusCode, resp.TLS != nil)
	}
	if !strings.Contains(log.String(), "tls=true") {
		t.Errorf("the log does not say it serves TLS:\n%s", log)
	}
}
