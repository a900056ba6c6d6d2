package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fastPoster sends predictions (POSTs that only read: sending one twice is harmless) over
// keep-alive HTTP/1.1 connections of its own, on the caller's goroutine: it writes the request
// in one write and reads the response with http.ReadResponse. net/http's client hands every
// request to a writing goroutine and its response back from a reading one; where a thread
// wake-up costs tens of microseconds (a virtual machine) those hand-offs cost a one-input
// prediction of the demo model 0.04-0.07 ms of its 0.44-0.48 (s3t bench serve on 2 cores, p50:
// 0.39-0.41 ms over these connections, 0.38-0.41 through the bench's minimal client). A Client
// uses it only for a plain http:// server that no proxy stands before, with its own transport
// (see fastEligible).
type fastPoster struct {
	addr string // host:port to dial
	host string // the Host header
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu          sync.Mutex
	idle        []*fastConn   // a stack: the latest used first
	reaper      *time.Timer   // closes the expired idle connections while any are idle
	idleTimeout time.Duration // fastIdleTimeout (shorter in tests)
}

// maxFastIdle caps the idle connections a fastPoster keeps, as DefaultTransport's
// MaxIdleConnsPerHost, and fastIdleTimeout is how long one stays idle at most, as its
// IdleConnTimeout (a timer closes the expired ones: see reap).
const (
	maxFastIdle     = 64
	fastIdleTimeout = 90 * time.Second
)

type fastConn struct {
	net.Conn
	r    *bufio.Reader
	buf  []byte    // the request being written
	used time.Time // when it was last given back
}

// fastPosters holds one fastPoster per server, shared by the Clients of that server as they
// share DefaultTransport's connections.
var fastPosters sync.Map // host:port "\x00" Host header -> *fastPoster

func fastPosterFor(base *url.URL) *fastPoster {
	f := newFastPoster(base)
	key := f.addr + "\x00" + f.host
	if v, ok := fastPosters.Load(key); ok {
		return v.(*fastPoster)
	}
	v, _ := fastPosters.LoadOrStore(key, f)
	return v.(*fastPoster)
}

// fastEligible reports whether predictions to base may bypass net/http: plain http (TLS and
// HTTP/2 are net/http's), and no proxy for base by proxy (the transport's Proxy, e.g.
// http.ProxyFromEnvironment).
func fastEligible(base *url.URL, proxy func(*http.Request) (*url.URL, error)) bool {
	if base.Scheme != "http" || base.User != nil || !asciiHost(base.Host) {
		return false // TLS, basic auth, and hosts net/http rewrites (IDNA, IPv6 zones) are net/http's
	}
	if proxy == nil {
		return true
	}
	p, err := proxy(&http.Request{Method: http.MethodPost, URL: base, Header: http.Header{}})
	return err == nil && p == nil
}

// asciiHost reports whether host goes on the wire as it is: printable ASCII, no IPv6 zone, no
// empty port.
func asciiHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return false
		}
	}
	return host != "" && !strings.HasSuffix(host, ":")
}

func newFastPoster(base *url.URL) *fastPoster {
	addr := base.Host
	if base.Port() == "" {
		addr = net.JoinHostPort(base.Hostname(), "80")
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &fastPoster{addr: addr, host: base.Host, dial: d.DialContext, idleTimeout: fastIdleTimeout}
}

// rawResponse is a response read to its end.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to path (a request URI) with the given headers, on an idle connection that
// the server has neither closed nor written to since (see alive), else a new one. Should the
// idle one fail before any byte of the response arrives nonetheless (the server closed it just
// then), the request is sent once more, on a new connection: a prediction may then reach the
// server twice, which only costs its computation (it changes nothing). net/http's transport,
// which never sends a POST twice, would return that error.
func (f *fastPoster) post(ctx context.Context, path string, header [][2]string, body []byte) (*rawResponse, error) {
	for again := false; ; again = true {
		var c *fastConn
		reused := false
		if !again {
			c, reused = f.get()
		}
		if c == nil {
			nc, err := f.dial(ctx, "tcp", f.addr)
			if err != nil {
				return nil, err
			}
			c = &fastConn{Conn: nc, r: bufio.NewReaderSize(nc, 16<<10)}
		}
		res, answered, err := f.roundTrip(ctx, c, path, header, body)
		if err != nil {
			c.Close()
			if reused && !answered && ctx.Err() == nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
				return nil, context.DeadlineExceeded // the connection's deadline, the context's, ran out first
			}
			return nil, err
		}
		return res, nil
	}
}

// roundTrip writes the request on c and reads the response to its end, giving c back to the
// idle ones when it can carry another request. answered reports whether any byte of a response
// arrived.
func (f *fastPoster) roundTrip(ctx context.Context, c *fastConn, path string, header [][2]string, body []byte) (res *rawResponse, answered bool, err error) {
	deadline, _ := ctx.Deadline() // zero: none
	if err := c.SetDeadline(deadline); err != nil {
		return nil, false, err
	}
	// A cancellation interrupts the reads and writes in progress (the caller then closes c).
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.buf = append(c.buf[:0], "POST "...)
	c.buf = append(c.buf, path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: "...)
	c.buf = append(c.buf, f.host...)
	c.buf = append(c.buf, "\r\nUser-Agent: Go-http-client/1.1\r\n"...)
	for _, h := range header {
		c.buf = append(c.buf, h[0]...)
		c.buf = append(c.buf, ": "...)
		c.buf = append(c.buf, h[1]...)
		c.buf = append(c.buf, "\r\n"...)
	}
	c.buf = append(c.buf, "Content-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(body)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, body...)
	_, werr := c.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil // do not keep a large request's buffer for the connection's life
	}
	if _, err := c.r.Peek(1); err != nil {
		if werr != nil {
			return nil, false, werr
		}
		return nil, false, err
	}
	// A server may answer before it has read the whole request (a body over its limit) and
	// close the connection, failing the write: its answer is the one to return.
	keep := werr == nil
	var resp *http.Response
	for informational := 0; ; informational++ {
		if resp, err = http.ReadResponse(c.r, nil); err != nil {
			return nil, true, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		resp.Body.Close() // an informational response (1xx): the final one follows
		if informational == 4 {
			return nil, true, errors.New("too many 1xx informational responses") // as net/http
		}
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, true, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, true, errors.New("server switched protocols")
	}
	// The response is whole. The connection carries the next request unless the server closes
	// it, sent more than the response, or a cancellation has (or is about to have) spent its
	// deadline.
	if stop() && keep && !resp.Close && c.r.Buffered() == 0 {
		f.put(c)
	} else {
		c.Close()
	}
	return &rawResponse{status: resp.StatusCode, header: resp.Header, body: data}, true, nil
}

// get takes an idle connection that can carry a request (nil when none); reused reports one
// was taken. Idle connections the server closed, or sent bytes on, are closed on the way.
func (f *fastPoster) get() (c *fastConn, reused bool) {
	for {
		f.mu.Lock()
		stale := f.expireLocked()
		c = nil
		if n := len(f.idle); n > 0 {
			c = f.idle[n-1]
			f.idle[n-1] = nil
			f.idle = f.idle[:n-1]
		}
		f.mu.Unlock()
		for _, s := range stale {
			s.Close()
		}
		if c == nil || c.alive() {
			return c, c != nil
		}
		c.Close()
	}
}

func (f *fastPoster) put(c *fastConn) {
	c.used = time.Now()
	f.mu.Lock()
	stale := f.expireLocked()
	if len(f.idle) < maxFastIdle {
		f.idle = append(f.idle, c)
		c = nil
		if f.reaper == nil {
			f.reaper = time.AfterFunc(f.idleTimeout, f.reap)
		}
	}
	f.mu.Unlock()
	for _, s := range stale {
		s.Close()
	}
	if c != nil {
		c.Close()
	}
}

// reap closes the connections idle for fastIdleTimeout, and runs again while any are idle.
func (f *fastPoster) reap() {
	f.mu.Lock()
	stale := f.expireLocked()
	if len(f.idle) > 0 {
		f.reaper.Reset(f.idleTimeout - time.Since(f.idle[0].used))
	} else {
		f.reaper = nil
	}
	f.mu.Unlock()
	for _, s := range stale {
		s.Close()
	}
}

// closeIdle closes the idle connections.
func (f *fastPoster) closeIdle() {
	f.mu.Lock()
	idle := f.idle
	f.idle = nil
	f.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// expireLocked removes the connections idle for fastIdleTimeout or more (the oldest are at the
// bottom of the stack) and returns them, to be closed outside f.mu.
func (f *fastPoster) expireLocked() []*fastConn {
	i := 0
	for i < len(f.idle) && time.Since(f.idle[i].used) >= f.idleTimeout {
		i++
	}
	if i == 0 {
		return nil
	}
	stale := slices.Clone(f.idle[:i])
	n := copy(f.idle, f.idle[i:])
	clear(f.idle[n:])
	f.idle = f.idle[:n]
	return stale
}

// maxFastBody is the largest request the fast path sends. It writes a request whole before it
// reads, so a server that answers early (a body over its limit) without reading the rest nor
// closing the connection would leave a larger write blocked; net/http reads while it writes.
// 64 KiB fits the socket buffers on both sides, and holds a batch of about 25 of the demo's
// 28x28 inputs as JSON.
const maxFastBody = 64 << 10

// validHeaderValue reports whether v may be sent as a header value as it is (no line breaks or
// other control characters but tab).
func validHeaderValue(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f })
}

// postRead sends a read-only POST of body to path: through the fast path when the client has
// one, else through its http.Client.
func (c *Client) postRead(ctx context.Context, path, ctype string, body []byte, extra ...[2]string) (*rawResponse, error) {
	if c.fast != nil && len(body) <= maxFastBody && validHeaderValue(c.key) {
		h := append(make([][2]string, 0, 4+len(extra)), [2]string{"Content-Type", ctype}, [2]string{"Accept", "application/json"})
		if c.key != "" {
			h = append(h, [2]string{"Authorization", "Bearer " + c.key})
		}
		h = append(h, extra...)
		uri := c.base.JoinPath(path).RequestURI()
		if !strings.HasPrefix(uri, "/") {
			uri = "/" + uri // JoinPath onto a base URL with no path gives a relative one
		}
		res, err := c.fast.post(ctx, uri, h, body)
		if err != nil {
			return nil, fmt.Errorf("api: POST %s: %w", path, err)
		}
		return res, nil
	}
	return c.send(ctx, http.MethodPost, path, bytes.NewReader(body), ctype, extra...)
}
