//go:build !linux

package api

// alive reports whether an idle connection can carry a request; without a non-blocking peek
// it answers true (a connection the server closed then fails before any answer, and the
// request goes again on a new one: see fastPoster.post).
func (c *fastConn) alive() bool { return c.r.Buffered() == 0 }
