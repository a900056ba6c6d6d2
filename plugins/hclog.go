package plugins

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// slogLogger is an hclog.Logger that writes to a slog.Logger: go-plugin logs its own events and
// every line of a plugin's stderr through it, so they reach the host's log with the plugin's
// name (the "plugin" attribute).
type slogLogger struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level
	// stderrName is the name go-plugin gives the logger of the plugin's stderr (the base name
	// of the executable); stderr marks that logger.
	stderrName string
	stderr     bool
}

// newHCLogger returns an hclog.Logger writing to l with the attribute plugin=name, for a plugin
// whose executable's base name is exe.
func newHCLogger(l *slog.Logger, name, exe string) hclog.Logger {
	return &slogLogger{l: l.With("plugin", name), level: hclog.Trace, stderrName: exe}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Log writes one record. go-plugin logs a plugin's stderr through a Named logger and its own
// events through the root one: its own events at info level are demoted to debug (a plugin
// process exiting at the end of a command is not news), and its "plugin" attribute, the
// executable's path, is renamed "path" so that "plugin" stays the plugin's name.
//
// On the stderr logger, a record without attributes is a line that is not a JSON log record
// (go-plugin logs those at debug level unless they start with "[INFO]", "panic: "...): it is
// logged at warn level, or info for a line tagged "[DEBUG]" or "[TRACE]", so that what a plugin
// prints (a reason to exit at start, a message during a call) is never lost. A JSON record's
// "timestamp" attribute, which go-plugin adds last, is dropped: the record has its time.
func (s *slogLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	if s.stderr {
		if len(args) == 0 && len(s.args) == 0 {
			level = plainLevel(level, msg)
		} else if n := len(args); n >= 2 && args[n-2] == "timestamp" {
			args = args[:n-2]
		}
	}
	if level < s.level {
		return
	}
	lvl := toSlog(level)
	if s.name == "" && lvl == slog.LevelInfo {
		lvl = slog.LevelDebug
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lvl) {
		return
	}
	attrs := append(append([]any{}, s.args...), args...)
	for i := 0; s.name == "" && i+1 < len(attrs); i += 2 {
		if attrs[i] == "plugin" {
			attrs[i] = "path"
		}
	}
	s.l.Log(ctx, lvl, msg, attrs...)
}

func (s *slogLogger) Trace(msg string, args ...any) { s.Log(hclog.Trace, msg, args...) }
func (s *slogLogger) Debug(msg string, args ...any) { s.Log(hclog.Debug, msg, args...) }
func (s *slogLogger) Info(msg string, args ...any)  { s.Log(hclog.Info, msg, args...) }
func (s *slogLogger) Warn(msg string, args ...any)  { s.Log(hclog.Warn, msg, args...) }
func (s *slogLogger) Error(msg string, args ...any) { s.Log(hclog.Error, msg, args...) }

func (s *slogLogger) enabled(level hclog.Level) bool {
	return level >= s.level && s.l.Enabled(context.Background(), toSlog(level))
}

func (s *slogLogger) IsTrace() bool { return s.enabled(hclog.Trace) }
func (s *slogLogger) IsDebug() bool { return s.enabled(hclog.Debug) }
func (s *slogLogger) IsInfo() bool  { return s.enabled(hclog.Info) }
func (s *slogLogger) IsWarn() bool  { return s.enabled(hclog.Warn) }
func (s *slogLogger) IsError() bool { return s.enabled(hclog.Error) }

func (s *slogLogger) ImpliedArgs() []any { return s.args }

func (s *slogLogger) With(args ...any) hclog.Logger {
	c := *s
	c.args = append(append([]any{}, s.args...), args...)
	return &c
}

func (s *slogLogger) Name() string { return s.name }

func (s *slogLogger) Named(name string) hclog.Logger {
	c := *s
	c.stderr = c.name == "" && name == s.stderrName
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (s *slogLogger) ResetNamed(name string) hclog.Logger {
	c := *s
	c.stderr = name == s.stderrName
	c.name = name
	return &c
}

func (s *slogLogger) SetLevel(level hclog.Level) { s.level = level }

// GetLevel returns the most verbose level the slog handler takes, so that go-plugin does not
// skip lines the host would log.
func (s *slogLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if s.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (s *slogLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(s.StandardWriter(opts), "", 0)
}

func (s *slogLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		s.Info(string(p))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// plainLevel is the level of a plain (not JSON) line of a plugin's stderr that go-plugin logs at
// level: at least info, and warn for a line without a level tag.
func plainLevel(level hclog.Level, line string) hclog.Level {
	switch {
	case level > hclog.Debug:
		return level
	case strings.HasPrefix(line, "[DEBUG]"), strings.HasPrefix(line, "[TRACE]"):
		return hclog.Info
	}
	return hclog.Warn
}

// maxLine bounds a line a lineWriter holds before it passes it on unfinished.
const maxLine = 64 << 10

// lineWriter cuts what is written to it into lines (without their newline) and passes each to
// fn; a line longer than maxLine is passed on in pieces.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(line string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.emit()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

// Flush passes on an unfinished last line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	w.fn(strings.TrimSuffix(string(w.buf), "\r"))
	w.buf = w.buf[:0]
}

// tailSize and tailLines bound how much of a plugin's last stderr lines a start failure quotes.
const (
	tailSize  = 2 << 10
	tailLines = 20
)

// stderrTail keeps the last lines of a plugin process's stderr, at most tailLines lines and
// tailSize bytes, for the error that says why it failed to start.
type stderrTail struct {
	mu    sync.Mutex
	lines []string
	size  int
}

func (t *stderrTail) add(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	if len(line) > tailSize {
		line = "..." + line[len(line)-tailSize+3:]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	t.size += len(line) + 1
	for t.size > tailSize || len(t.lines) > tailLines {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

// String returns the lines kept, one per line, each indented by two spaces.
func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return "  " + strings.Join(t.lines, "\n  ")
}

var _ hclog.Logger = (*slogLogger)(nil)
