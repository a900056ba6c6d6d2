package api

import (
	"errors"
	"syscall"
)

// alive reports whether an idle connection can carry a request: the server has neither closed
// it nor sent anything on it since the last response. One non-blocking peek at the socket
// (a read deadline in the past would fail before reading anything).
func (c *fastConn) alive() bool {
	if c.r.Buffered() > 0 {
		return false
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var rerr error
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		// 0 bytes and no error: closed; bytes: the server sent something unasked.
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // done, whatever it read: never wait
	}); err != nil {
		return false
	}
	return errors.Is(rerr, syscall.EAGAIN) // nothing waiting, and open
}
