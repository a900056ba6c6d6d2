package plugins

import "errors"

// Sentinel errors. Errors name the plugin and the operation and wrap one of these; test with
// errors.Is. Errors a plugin returns itself keep their sdk sentinel (sdk.ErrInvalidConfig, ...).
var (
	// ErrNotFound means no built-in or installed plugin has the name.
	ErrNotFound = errors.New("plugin not found")
	// ErrDuplicate means a name is registered or installed twice.
	ErrDuplicate = errors.New("duplicate plugin")
	// ErrTampered means a plugin binary's SHA-256 differs from the one recorded when it was
	// installed (or, for the built-ins, when the host started): the host refuses to run it.
	ErrTampered = errors.New("plugin binary does not match its recorded SHA-256")
	// ErrStart means a plugin process could not be started or did not complete the handshake.
	ErrStart = errors.New("plugin failed to start")
	// ErrCrashed means the plugin process exited or became unreachable during a call; the next
	// call starts a new process.
	ErrCrashed = errors.New("plugin process exited")
	// ErrTimeout means a call did not finish within the call timeout; the process was stopped
	// and the next call starts a new one.
	ErrTimeout = errors.New("plugin call timed out")
	// ErrKind means the plugin does not provide the kind asked for (a PEFT asked of a selector).
	ErrKind = errors.New("plugin is of another kind")
	// ErrNotInstalled means a file in the plugin directory was never installed (it has no
	// recorded checksum), so the host does not run it.
	ErrNotInstalled = errors.New("plugin not installed")
	// ErrClosed means the host was closed.
	ErrClosed = errors.New("plugin host closed")
)
