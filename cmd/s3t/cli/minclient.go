package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// minimalClient posts requests over keep-alive HTTP/1.1 connections with nothing else in the
// way, as load generators do (wrk, h2load): the caller's goroutine writes the request on a
// connection it holds for the call and reads the response back with http.ReadResponse, to the
// last byte, without decoding it. net/http's client adds goroutines per connection and buffers,
// and on a machine whose cores the client shares with the server that work also slows the
// server; beside api.Client, this measures what the server costs a client that does not pay it.
type minimalClient struct {
	addr string // host:port
	idle chan *minimalConn
}

type minimalConn struct {
	net.Conn
	r   *bufio.Reader
	req []byte
}

func newMinimalClient(addr string, conns int) *minimalClient {
	return &minimalClient{addr: addr, idle: make(chan *minimalConn, conns)}
}

// post sends body to path and returns an error unless the status is 200.
func (m *minimalClient) post(ctx context.Context, path, ctype string, body []byte) error {
	var c *minimalConn
	select {
	case c = <-m.idle:
	default:
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", m.addr)
		if err != nil {
			return fmt.Errorf("minimal client: %w", err)
		}
		c = &minimalConn{Conn: nc, r: bufio.NewReaderSize(nc, 16<<10)}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return fmt.Errorf("minimal client: %w", err)
	}
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, m.addr...)
	c.req = append(c.req, "\r\nContent-Type: "...)
	c.req = append(c.req, ctype...)
	c.req = append(c.req, "\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.Write(c.req); err != nil {
		c.Close()
		return fmt.Errorf("minimal client: POST %s: %w", path, err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.Close()
		return fmt.Errorf("minimal client: POST %s: %w", path, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.Close()
		return fmt.Errorf("minimal client: POST %s: %w", path, err)
	}
	if resp.Close {
		c.Close()
	} else {
		select {
		case m.idle <- c:
		default:
			c.Close()
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("minimal client: POST %s: %s: %s", path, resp.Status, got)
	}
	return nil
}

func (m *minimalClient) close() {
	for {
		select {
		case c := <-m.idle:
			c.Close()
		default:
			return
		}
	}
}
