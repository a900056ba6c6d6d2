// Package plugins is the host side of s3t's plugins and the home of the built-in ones.
//
// # The host
//
// A Manager discovers plugins: the built-ins, compiled into the s3t executable and run out of
// process as `s3t plugin run NAME` (Config.Self; on Linux started from /proc/self/exe, so that
// an executable replaced under a running host leaves them the host's own code), and third-party binaries installed into the
// plugin directory ($S3T_PLUGIN_DIR, default $S3T_DATA/plugins with $S3T_DATA defaulting to
// ./s3t-data) by Install, which records each binary's SHA-256 in the directory's catalog.json.
// List shows them all (name, kind, version, protocol, checksum, status) without starting any,
// including files that were never installed, which the host does not run.
//
// A Client runs one plugin through hashicorp/go-plugin over gRPC: it starts the process on first
// use, after go-plugin's SecureConfig has checked the binary's SHA-256 (before every start,
// restarts included: a modified binary fails with ErrTampered), negotiates the protocol version,
// reuses the process while its binary is still the file it verified (checked before every call
// with a stat, hashed again only when the file changed: a binary replaced under a running
// process fails the call with ErrTampered, and the process is stopped once its calls in flight
// end), bounds every call with a timeout (ErrTimeout; the hung process is stopped), turns a
// process that dies during a call into ErrCrashed, and stops a process that has had no call in
// flight for its idle timeout (DefaultIdleTimeout, Config.IdleTimeout; never one with a call in
// flight); the next call starts a new process. Errors name the plugin and the method and keep
// the plugin's sdk sentinels. The plugin's stderr goes to the host's slog logger with the
// attribute plugin=<name>: its slog records at their own level, any other line at warn level
// (info when tagged "[DEBUG]"), whether written before the handshake, to os.Stderr or to file
// descriptor 2. A start that fails (the process exits or hangs before its handshake, or its Info
// fails) says so with the last lines of its stderr (at most 20 lines, 2 KB), not go-plugin's
// checklist.
//
// Manager.Plan caches PEFT plans by (plugin checksum, manifest, config), in memory and under
// $S3T_DATA/plans (a cached plan is returned only while the binary passes the same check), and
// validates each with sdk.ValidatePlan: plugins are consulted when a model is created (its plan
// and slice orders are stored with it, and its training and retraining reuse them), never on a
// hot path. Manager.PlanRef and Manager.SelectorRef also name the build that answered (Ref:
// name, version, SHA-256), which the server records with the model.
//
// # The built-ins
//
// Subpackages lora (peft.lora), prefix (peft.prefix), adapter (peft.adapter) and selectors
// (selector.cyclic, selector.bms, selector.random, wrapping package unlearning's selectors) are
// written against package sdk alone. Builtins is their registry; registering a name twice
// fails loudly (ErrDuplicate, or a panic from MustRegister).
package plugins
