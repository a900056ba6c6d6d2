package cli

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestServeDebugLoopbackOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:6060", ":6060"} {
		if err := serveDebug(ctx, addr); !errors.Is(err, errUsage) {
			t.Errorf("serveDebug(%q) = %v, want a usage error", addr, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := serveDebug(ctx, addr); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	for i := 0; i < 50; i++ {
		if resp, err = http.Get("http://" + addr + "/debug/pprof/"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /debug/pprof/ = %v, %v", resp, err)
	}
	resp.Body.Close()
}
