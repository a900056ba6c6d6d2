package plugins

import (
	"context"
	"io"
	"log"
	"log/slog"

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
}

// newHCLogger returns an hclog.Logger writing to l with the attribute plugin=name.
func newHCLogger(l *slog.Logger, name string) hclog.Logger {
	return &slogLogger{l: l.With("plugin", name), level: hclog.Trace}
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
func (s *slogLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < s.level {
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
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (s *slogLogger) ResetNamed(name string) hclog.Logger {
	c := *s
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

var _ hclog.Logger = (*slogLogger)(nil)
