package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSFiles returns the TLS configuration of a server that serves the certificate chain in
// certFile with the private key in keyFile (PEM files, as tls.LoadX509KeyPair reads them). The
// pair is loaded now, so that a bad one fails at start; afterwards a handshake that finds either
// file changed (a certificate renewed in place, as certbot or cert-manager do) loads the pair
// again. A changed pair that does not load (its two files written one after the other, or a
// broken file) is logged once and the last good one served meanwhile. TLS 1.2 is the oldest
// version offered.
func TLSFiles(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("server: TLS needs both a certificate file and a key file")
	}
	if log == nil {
		log = slog.Default()
	}
	c := &certFiles{cert: certFile, key: keyFile, log: log}
	st, err := c.stamps()
	if err != nil {
		return nil, fmt.Errorf("server: TLS: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: TLS certificate %s, key %s: %w", certFile, keyFile, err)
	}
	c.cur, c.loaded = &pair, st
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}, nil
}

// certFiles serves a certificate pair from its files, loading them again when they change.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu     sync.Mutex
	cur    *tls.Certificate
	loaded [2]fileStamp // the files' stamps when cur was loaded
	failed [2]fileStamp // the stamps of the last pair that did not load
}

// unreadable stands for certificate files that could not be stat'ed, in certFiles.failed.
var unreadable = [2]fileStamp{{size: -1}}

// fileStamp tells a file's versions apart: a rewrite or a replacement changes its size or
// modification time.
type fileStamp struct {
	size int64
	mod  time.Time
}

func (c *certFiles) stamps() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, name := range []string{c.cert, c.key} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, err
		}
		out[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// get is the tls.Config's GetCertificate: the current pair, loaded again first when its files
// changed since (two stats a handshake; handshakes are per connection, not per request).
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st, err := c.stamps()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.failed == unreadable {
			return c.cur, nil
		}
		c.failed = unreadable
		c.log.Warn("TLS certificate files unreadable: serving the last certificate loaded", "cert", c.cert, "key", c.key, "err", err)
		return c.cur, nil
	}
	if st == c.loaded || st == c.failed {
		return c.cur, nil
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		c.failed = st
		c.log.Warn("TLS certificate files changed but do not load: serving the last certificate loaded", "cert", c.cert, "key", c.key, "err", err)
		return c.cur, nil
	}
	c.cur, c.loaded, c.failed = &pair, st, [2]fileStamp{}
	c.log.Info("TLS certificate loaded again: its files changed", "cert", c.cert, "key", c.key)
	return c.cur, nil
}

// certificateExpiry is the gauge s3t_tls_certificate_expiry_timestamp_seconds: when the
// certificate the server would present now stops being valid (its NotAfter, Unix seconds; 0
// when it cannot be read), for an alert well before a renewal that did not happen.
func certificateExpiry(cfg *tls.Config) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3t_tls_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate the server presents now expires (NotAfter, Unix seconds; 0 when it cannot be read); alert on it minus time() well before a renewal is due."},
		func() float64 {
			cert := (*tls.Certificate)(nil)
			if cfg.GetCertificate != nil {
				cert, _ = cfg.GetCertificate(&tls.ClientHelloInfo{})
			} else if len(cfg.Certificates) > 0 {
				cert = &cfg.Certificates[0]
			}
			if cert == nil || cert.Leaf == nil {
				return 0
			}
			return float64(cert.Leaf.NotAfter.Unix())
		})
}

// serverErrorLog is the HTTP server's ErrorLog: its lines at warn level, except a failed TLS
// handshake, at debug. A load balancer's TCP probe, a port scanner or a client that does not
// trust the certificate makes one per connection, and at warn they filled the log.
func serverErrorLog(h slog.Handler) *log.Logger {
	return log.New(levelWriter{h}, "", 0)
}

type levelWriter struct{ h slog.Handler }

func (w levelWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if w.h.Enabled(ctx, level) {
		w.h.Handle(ctx, slog.NewRecord(time.Now(), level, msg, 0))
	}
	return len(p), nil
}
