package cli

import (
	"fmt"
	"io"
	"os"
	"time"
)

// statusEvery is how often a progress line is written where it cannot redraw itself.
const statusEvery = 10 * time.Second

// statusLine is a progress line. On a terminal it redraws itself in place (a carriage return,
// then erase the line); elsewhere (a log file, a CI job's output) it writes a plain line at most
// every statusEvery, and the latest one at the end, with no escape codes in the log.
type statusLine struct {
	w       io.Writer
	tty     bool
	written time.Time
	pending string // the latest line, not written yet (off a terminal)
}

func newStatusLine(w io.Writer) *statusLine { return &statusLine{w: w, tty: isTerminal(w)} }

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// set shows line as the current progress.
func (s *statusLine) set(line string) {
	if s.tty {
		fmt.Fprintf(s.w, "\r\033[K%s", line)
		return
	}
	if time.Since(s.written) < statusEvery {
		s.pending = line
		return
	}
	fmt.Fprintln(s.w, line)
	s.written, s.pending = time.Now(), ""
}

// print writes line for good, on a line of its own, above the progress line.
func (s *statusLine) print(line string) {
	if s.tty {
		fmt.Fprintf(s.w, "\r\033[K%s\n", line)
		return
	}
	fmt.Fprintln(s.w, line)
}

// end leaves the latest progress written: on a terminal, it ends its line; elsewhere it writes
// the latest line when it was held back.
func (s *statusLine) end() {
	if s.tty {
		fmt.Fprintln(s.w)
		return
	}
	if s.pending != "" {
		fmt.Fprintln(s.w, s.pending)
		s.pending = ""
	}
}
