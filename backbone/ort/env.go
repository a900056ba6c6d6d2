package ort

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	onnx "github.com/yalue/onnxruntime_go"
)

// DefaultORTVersion is the ONNX Runtime release that `make deps` installs under the s3t cache;
// Init looks for it there. onnxruntime_go needs ONNX Runtime 1.24 or later (C API version 24).
const DefaultORTVersion = "1.30.0"

// Environment variables Init reads.
const (
	// EnvLibrary names the ONNX Runtime shared library to load (the Makefile exports it).
	EnvLibrary = "S3T_ORT_LIBRARY"
	// EnvCache is the s3t download cache that `make deps` installs ONNX Runtime into
	// (default ~/.cache/s3t).
	EnvCache = "S3T_CACHE"
)

// soname is the library name handed to dlopen when no file is found: the dynamic linker then
// searches LD_LIBRARY_PATH, the ld.so cache and the system directories.
const soname = "libonnxruntime.so.1"

// env is the process-wide ONNX Runtime environment.
var env struct {
	mu       sync.Mutex
	ready    bool
	library  string // the library loaded
	sessions int    // sessions created and not yet closed
}

// InitOption configures Init.
type InitOption func(*initConfig)

type initConfig struct {
	library  string
	logLevel slog.Level
}

// WithLibrary makes Init load the ONNX Runtime shared library at path, and nothing else.
func WithLibrary(path string) InitOption {
	return func(c *initConfig) { c.library = path }
}

// WithORTLogLevel sets the severity from which ONNX Runtime's own log lines reach stderr
// (they bypass slog): slog.LevelDebug and below is ORT's verbose level, then info, warning,
// error, and above slog.LevelError only fatal messages. Default: fatal only, since every
// failure also comes back as a Go error.
func WithORTLogLevel(l slog.Level) InitOption {
	return func(c *initConfig) { c.logLevel = l }
}

// ortLogLevel maps a slog level to ONNX Runtime's environment option.
func ortLogLevel(l slog.Level) onnx.EnvironmentOption {
	switch {
	case l <= slog.LevelDebug:
		return onnx.WithLogLevelVerbose()
	case l <= slog.LevelInfo:
		return onnx.WithLogLevelInfo()
	case l <= slog.LevelWarn:
		return onnx.WithLogLevelWarning()
	case l <= slog.LevelError:
		return onnx.WithLogLevelError()
	}
	return onnx.WithLogLevelFatal()
}

// defaultInit is the configuration of an Init without options.
func defaultInit() initConfig {
	return initConfig{logLevel: slog.LevelError + 4}
}

// candidate is one place Init may load the library from, with where the choice came from.
type candidate struct {
	path, source string
}

// libraryCandidates lists, in order, where Init looks for the library: an explicit path or
// S3T_ORT_LIBRARY is the only candidate when set; otherwise the s3t cache, /usr/local/lib and
// the plain soname.
func libraryCandidates(explicit string) []candidate {
	if explicit != "" {
		return []candidate{{explicit, "WithLibrary"}}
	}
	if p := os.Getenv(EnvLibrary); p != "" {
		return []candidate{{p, EnvLibrary}}
	}
	var out []candidate
	rel := filepath.Join("onnxruntime-"+DefaultORTVersion, "lib", soname)
	if c := os.Getenv(EnvCache); c != "" {
		out = append(out, candidate{filepath.Join(c, rel), EnvCache})
	} else if home, err := os.UserHomeDir(); err == nil {
		out = append(out, candidate{filepath.Join(home, ".cache", "s3t", rel), "s3t cache"})
	}
	out = append(out,
		candidate{filepath.Join("/usr/local/lib", soname), "system"},
		candidate{soname, "dynamic linker search"},
	)
	return out
}

// Init loads the ONNX Runtime shared library and creates the process's environment. It is
// idempotent and safe for concurrent use: once an environment exists, further calls return nil
// (or an error wrapping ErrAlreadyInitialized when WithLibrary names a different library).
// NewSession calls it with no options, so an explicit call is only needed to choose the library
// or to fail early.
//
// The library is, in order: the WithLibrary path; else $S3T_ORT_LIBRARY; else the first that
// loads of $S3T_CACHE/onnxruntime-1.30.0/lib/libonnxruntime.so.1 (~/.cache/s3t/... when
// S3T_CACHE is unset), /usr/local/lib/libonnxruntime.so.1 and libonnxruntime.so.1 through the
// dynamic linker's search. When none loads, the error wraps ErrLibrary and lists every path
// tried with the reason.
func Init(opts ...InitOption) error {
	cfg := defaultInit()
	for _, o := range opts {
		o(&cfg)
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	return initLocked(cfg)
}

func initLocked(cfg initConfig) error {
	if env.ready {
		if cfg.library != "" && cfg.library != env.library {
			return fmt.Errorf("ort: init with %s: %w (loaded: %s)", cfg.library, ErrAlreadyInitialized, env.library)
		}
		return nil
	}
	// onnxruntime_go calls dlopen and then dlerror in separate cgo calls, and dlerror reads a
	// per-thread state: a goroutine moved to another thread between them read an empty message
	// ("Error loading ONNX shared library ...: " and nothing), so the reason a library did not
	// load could go missing from the error (TestInitDefaultSearch failed so once in a CI run, and
	// not in 150 runs under load here). Held to one thread, both calls see the same state.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var tried []string
	for _, c := range libraryCandidates(cfg.library) {
		if strings.ContainsRune(c.path, filepath.Separator) {
			if _, err := os.Stat(c.path); err != nil {
				tried = append(tried, fmt.Sprintf("%s (%s): not found", c.path, c.source))
				continue
			}
		}
		onnx.SetSharedLibraryPath(c.path)
		if err := onnx.InitializeEnvironment(ortLogLevel(cfg.logLevel)); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%s): %v", c.path, c.source, err))
			continue
		}
		env.ready, env.library = true, c.path
		slog.Debug("ort: environment ready", "library", c.path, "version", onnx.GetVersion())
		return nil
	}
	return fmt.Errorf("%w (needs ONNX Runtime >= 1.24; `make deps` installs %s, or set %s): tried %s",
		ErrLibrary, DefaultORTVersion, EnvLibrary, strings.Join(tried, "; "))
}

// Shutdown destroys the environment and unloads the library, for tests and commands that want
// a clean exit. It refuses with an error wrapping ErrBusy while sessions are open, and does
// nothing when no environment exists. A later Init or NewSession starts a new environment.
func Shutdown() error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if !env.ready {
		return nil
	}
	if env.sessions > 0 {
		return fmt.Errorf("ort: shutdown: %d open: %w", env.sessions, ErrBusy)
	}
	err := onnx.DestroyEnvironment()
	env.ready, env.library = false, ""
	if err != nil {
		return fmt.Errorf("ort: shutdown: %w", err)
	}
	return nil
}

// Version returns the loaded ONNX Runtime's version ("1.30.0"), or "" before Init.
func Version() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	if !env.ready {
		return ""
	}
	return onnx.GetVersion()
}

// Library returns the path of the loaded ONNX Runtime library, or "" before Init.
func Library() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.library
}

// acquire makes sure the environment exists and counts one more open session, so that Shutdown
// cannot pull the library from under it.
func acquire() error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if err := initLocked(defaultInit()); err != nil {
		return err
	}
	env.sessions++
	return nil
}

// release undoes acquire.
func release() {
	env.mu.Lock()
	env.sessions--
	env.mu.Unlock()
}
