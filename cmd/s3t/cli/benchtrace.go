package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/trace"
	"time"
)

// traceSeconds is how long s3t bench serve --trace traces each side.
const traceSeconds = 2

// freeLoopbackAddr returns a loopback address with a port free at the time of the call, for a
// child process to listen on.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serveTraces writes Go execution traces of one client sending single inputs back to back:
// dir/server.trace is the server's (through its profiler on debugAddr, traceSeconds long) while
// httpCall runs, and dir/direct.trace this process's while directCall runs, as long. Each
// side's latencies over the traced time are returned, so that a trace can be read against the
// p50 it shows. Tracing costs time of its own: the figures measured beside it are not the run's.
func serveTraces(ctx context.Context, dir, debugAddr string, httpCall, directCall func(context.Context, int) error) (httpStats, directStats latencyStats, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return httpStats, directStats, err
	}
	// The server's trace: fetched while this process keeps the server busy.
	serverTrace := filepath.Join(dir, "server.trace")
	fetched := make(chan error, 1)
	go func() {
		fetched <- fetchTrace(ctx, "http://"+debugAddr+fmt.Sprintf("/debug/pprof/trace?seconds=%d", traceSeconds), serverTrace)
	}()
	if httpStats, err = callUntil(ctx, fetched, httpCall); err != nil {
		return httpStats, directStats, fmt.Errorf("server trace: %w", err)
	}
	// This process's trace of the direct runs.
	f, err := os.Create(filepath.Join(dir, "direct.trace"))
	if err != nil {
		return httpStats, directStats, err
	}
	defer f.Close()
	if err := trace.Start(f); err != nil {
		return httpStats, directStats, fmt.Errorf("direct trace: %w", err)
	}
	stop := make(chan error, 1)
	time.AfterFunc(traceSeconds*time.Second, func() { stop <- nil })
	directStats, err = callUntil(ctx, stop, directCall)
	trace.Stop()
	if err != nil {
		return httpStats, directStats, fmt.Errorf("direct trace: %w", err)
	}
	return httpStats, directStats, f.Close()
}

// callUntil calls call back to back, one at a time, until done yields; it returns the calls'
// latencies, or done's error.
func callUntil(ctx context.Context, done <-chan error, call func(context.Context, int) error) (latencyStats, error) {
	var lat []time.Duration
	start := time.Now()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				return latencyStats{}, err
			}
			if len(lat) == 0 {
				return latencyStats{}, fmt.Errorf("no call finished while tracing")
			}
			return summarize(lat, time.Since(start), 1), nil
		default:
		}
		t0 := time.Now()
		if err := call(ctx, i); err != nil {
			return latencyStats{}, err
		}
		lat = append(lat, time.Since(t0))
	}
}

// fetchTrace GETs a Go execution trace from a profiler's URL into path.
func fetchTrace(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", url, err)
	}
	return f.Close()
}
