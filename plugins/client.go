package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/s3t-dev/s3t/sdk"
)

// Default timeouts of a Client.
const (
	// DefaultCallTimeout bounds every call to a plugin.
	DefaultCallTimeout = 60 * time.Second
	// DefaultStartTimeout bounds a plugin's start and handshake.
	DefaultStartTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long a plugin process may go without a call before it is stopped
	// (the next call starts a new one).
	DefaultIdleTimeout = 5 * time.Minute
)

// Command says how to start a plugin process: the executable, its arguments and extra
// environment variables (on top of the host's).
type Command struct {
	// Path is the executable.
	Path string `json:"path"`
	// Args are the arguments after the executable's name.
	Args []string `json:"args,omitempty"`
	// Env holds extra "KEY=value" variables. The host's own environment is passed too and wins
	// for a variable set in both.
	Env []string `json:"env,omitempty"`
	// shown is the path shown for Path, where Path does not say which file it is: the built-ins
	// start from /proc/self/exe (see runningExecutable), shown as the host's executable. It is
	// the process's argv[0] too.
	shown string
}

// String returns the command line, as shown.
func (c Command) String() string { return strings.Join(append([]string{c.display()}, c.Args...), " ") }

// display is the executable's path as shown: shown, else Path.
func (c Command) display() string {
	if c.shown != "" {
		return c.shown
	}
	return c.Path
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	logger       *slog.Logger
	callTimeout  time.Duration
	startTimeout time.Duration
	idleTimeout  time.Duration
}

// WithLogger sets the logger that receives the plugin's stderr and go-plugin's events, with the
// attribute plugin=<name>. Default: slog.Default().
func WithLogger(l *slog.Logger) ClientOption {
	return func(c *clientConfig) { c.logger = l }
}

// WithCallTimeout bounds every call. Default DefaultCallTimeout.
func WithCallTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.callTimeout = d }
}

// WithStartTimeout bounds a start and its handshake. Default DefaultStartTimeout.
func WithStartTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.startTimeout = d }
}

// WithIdleTimeout stops the process once it has had no call in flight for d; the next call
// starts a new one. Default DefaultIdleTimeout.
func WithIdleTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.idleTimeout = d }
}

// Client is the host's side of one plugin: it starts the process on first use (after checking
// the binary's SHA-256), reuses it, stops it once idle, starts a new one after a crash, a timeout
// or an idle stop, bounds every call with a timeout, and names the plugin in every error. A
// plugin that crashes or hangs never takes the host down. Safe for concurrent use.
type Client struct {
	name     string
	cmd      Command
	checksum []byte
	version  string // as the catalog or the built-ins' registry records it (see Ref)
	cfg      clientConfig

	mu   sync.Mutex
	inst *instance // the process new calls go to
	// live holds every process started and not yet being stopped.
	live map[*instance]struct{}
	// cur mirrors inst for Pid and Protocol, which must not wait for a start in progress.
	cur    atomic.Pointer[instance]
	info   *sdk.Info
	starts atomic.Int64
	closed bool
	// stopping counts processes being stopped in the background; Close waits for them.
	stopping sync.WaitGroup
	// verified is the executable's stamp when its SHA-256 was last found to be checksum
	// (verifiedOK: there is one): at a start, or by verifyLocked.
	verified   fileStamp
	verifiedOK bool
}

// fileStamp identifies a version of a file without reading it: a file replaced (renamed over,
// rewritten, truncated) has another stamp.
type fileStamp struct {
	size, mod, ctime int64
	dev, ino         uint64
}

func stampFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mod: fi.ModTime().UnixNano()}
	st.dev, st.ino, st.ctime = sysStamp(fi)
	return st, nil
}

// instance is one running plugin process.
type instance struct {
	pc       *plugin.Client
	rpc      plugin.ClientProtocol
	info     *sdk.Info
	pid      int
	protocol int
	impls    map[string]any
	// stderr is the plugin's streamed os.Stderr, flushed once the process is stopped.
	stderr *lineWriter

	// Guarded by the Client's mu:
	active   int         // calls in flight (see acquire and release)
	lastUsed time.Time   // when the last call ended
	idle     *time.Timer // stops the process once idle (armed while active is 0)
	retired  bool        // takes no new calls; stopped when the last one ends
	stopped  bool        // being stopped, or stopped
}

// NewClient returns a Client for the plugin called name (used in errors and logs), started by
// cmd, whose executable must have the given SHA-256. Nothing starts until the first call.
func NewClient(name string, cmd Command, checksum []byte, opts ...ClientOption) *Client {
	cfg := clientConfig{logger: slog.Default(), callTimeout: DefaultCallTimeout, startTimeout: DefaultStartTimeout, idleTimeout: DefaultIdleTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.idleTimeout <= 0 {
		cfg.idleTimeout = DefaultIdleTimeout
	}
	return &Client{name: name, cmd: cmd, checksum: append([]byte{}, checksum...), cfg: cfg, live: map[*instance]struct{}{}}
}

// Name returns the plugin's name.
func (c *Client) Name() string { return c.name }

// Command returns how the plugin is started.
func (c *Client) Command() Command { return c.cmd }

// Checksum returns the SHA-256 the executable must have.
func (c *Client) Checksum() []byte { return append([]byte{}, c.checksum...) }

// Ref identifies a plugin's build: its name, its version as recorded when it was installed (a
// built-in's: as registered in s3t), and the SHA-256 of the executable that runs it (a
// built-in's: the s3t executable's). A Client runs no other file than the one of that SHA-256,
// so an answer it gave came from the build its Ref names.
type Ref struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// Ref returns the build of the plugin this Client runs.
func (c *Client) Ref() Ref {
	return Ref{Name: c.name, Version: c.version, SHA256: hex.EncodeToString(c.checksum)}
}

// Info starts the plugin if needed and returns what it says it is.
func (c *Client) Info(ctx context.Context) (*sdk.Info, error) {
	inst, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.release(inst)
	info := *inst.info
	return &info, nil
}

// Protocol returns the protocol version negotiated with the running process (0 when none runs).
func (c *Client) Protocol() int {
	if inst := c.cur.Load(); inst != nil {
		return inst.protocol
	}
	return 0
}

// Pid returns the running process's id, 0 when none runs.
func (c *Client) Pid() int {
	if inst := c.cur.Load(); inst != nil && !inst.pc.Exited() {
		return inst.pid
	}
	return 0
}

// Starts returns how many processes the Client has started (or tried to).
func (c *Client) Starts() int { return int(c.starts.Load()) }

// Close stops the processes, if any, calls in flight included; later calls fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	for inst := range c.live {
		c.stopLocked(inst)
	}
	c.mu.Unlock()
	c.stopping.Wait()
	return nil
}

// PEFT returns the plugin as an sdk.PEFT whose calls go to the process, under the Client's
// timeouts and restarts. Calls fail with ErrKind when the plugin is not a PEFT.
func (c *Client) PEFT() sdk.PEFT { return peftCaller{c} }

// Selector returns the plugin as an sdk.Selector whose calls go to the process.
func (c *Client) Selector() sdk.Selector { return selectorCaller{c} }

// setInstance records the current process (mu held).
func (c *Client) setInstance(inst *instance) {
	c.inst = inst
	c.cur.Store(inst)
}

// acquire returns the running process, starting one when none runs or the last one exited,
// and counts a call in flight on it: the caller must release it. A process with calls in flight
// is never stopped for being idle.
func (c *Client) acquire(ctx context.Context) (*instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("plugin %s: %w", c.name, ErrClosed)
	}
	if c.inst != nil && c.inst.pc.Exited() {
		c.cfg.logger.Warn("plugin process exited; starting a new one", "plugin", c.name, "pid", c.inst.pid)
		c.stopLocked(c.inst)
	}
	// A start checks the binary's SHA-256 (go-plugin's SecureConfig); a running process, which
	// was started from it, is used only while the binary is still that file.
	if c.inst != nil {
		if err := c.verifyLocked(); err != nil {
			return nil, err
		}
	}
	if c.inst == nil {
		inst, err := c.start(ctx)
		if err != nil {
			return nil, err
		}
		c.setInstance(inst)
		c.live[inst] = struct{}{}
		if c.info == nil {
			c.info = inst.info
		}
	}
	c.inst.active++
	return c.inst, nil
}

// release ends a call acquire counted. The last call to end on a retired process stops it; on
// the current one it arms the idle timer.
func (c *Client) release(inst *instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	inst.active--
	inst.lastUsed = time.Now()
	switch {
	case inst.active > 0 || inst.stopped:
	case inst.retired:
		c.stopLocked(inst)
	case inst.idle == nil:
		inst.idle = time.AfterFunc(c.cfg.idleTimeout, func() { c.reap(inst) })
	default:
		inst.idle.Reset(c.cfg.idleTimeout)
	}
}

// reap stops inst if it has been idle for the idle timeout (its timer fired).
func (c *Client) reap(inst *instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A call that ended since the timer was set re-armed it.
	if inst.stopped || inst.active > 0 || time.Since(inst.lastUsed) < c.cfg.idleTimeout {
		return
	}
	c.cfg.logger.Info("plugin process idle; stopping it (the next call starts a new one)", "plugin", c.name, "pid", inst.pid, "idle", c.cfg.idleTimeout)
	c.stopLocked(inst)
}

// retireLocked sends no more calls to inst and stops it once the calls in flight on it have
// ended (mu held).
func (c *Client) retireLocked(inst *instance) {
	if c.inst == inst {
		c.setInstance(nil)
	}
	inst.retired = true
	if inst.active == 0 {
		c.stopLocked(inst)
	}
}

// verify checks that the executable is still the one whose SHA-256 was verified (see
// verifyLocked).
func (c *Client) verify() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("plugin %s: %w", c.name, ErrClosed)
	}
	return c.verifyLocked()
}

// verifyLocked checks that the executable is still the file whose SHA-256 was last found to be
// the recorded one (mu held). It costs a stat: the file is hashed again only when its size,
// modification or change time, inode or device differ from that file's (or when it was never
// hashed here). A binary that no longer matches (replaced by a rename, say, which a running
// process does not prevent) fails with ErrTampered, and the running process, started from the
// verified binary, is stopped once its calls in flight have ended.
func (c *Client) verifyLocked() error {
	st, err := stampFile(c.cmd.Path)
	if err == nil && c.verifiedOK && st == c.verified {
		return nil
	}
	var got string
	if err == nil {
		var sum []byte
		if sum, err = FileSHA256(c.cmd.Path); err == nil {
			if bytes.Equal(sum, c.checksum) {
				c.verified, c.verifiedOK = st, true
				return nil
			}
			got = "has SHA-256 " + hex.EncodeToString(sum)
		}
	}
	if err != nil {
		got = "cannot be read (" + err.Error() + ")"
	}
	c.verifiedOK = false
	want := hex.EncodeToString(c.checksum)
	inst := c.inst
	if inst == nil {
		c.cfg.logger.Error("plugin binary refused: checksum mismatch", "plugin", c.name, "path", c.cmd.Path, "want_sha256", want, "got", got)
		return fmt.Errorf("plugin %s: %w: %s %s, recorded %s; refusing to run it (the binary changed after its checksum was recorded)",
			c.name, ErrTampered, c.cmd.Path, got, want)
	}
	c.cfg.logger.Error("plugin binary changed while its process ran; stopping the process", "plugin", c.name, "pid", inst.pid,
		"path", c.cmd.Path, "want_sha256", want, "got", got)
	c.retireLocked(inst)
	return fmt.Errorf("plugin %s: %w: %s changed while its process ran: it now %s, recorded %s; the process (pid %d) is stopped once its calls in flight end, and the changed binary will not be started",
		c.name, ErrTampered, c.cmd.Path, got, want, inst.pid)
}

// stopLocked forgets inst and stops its process in the background (mu held); calls in flight on
// it fail.
func (c *Client) stopLocked(inst *instance) {
	if inst.stopped {
		return
	}
	inst.stopped = true
	if inst.idle != nil {
		inst.idle.Stop()
	}
	delete(c.live, inst)
	if c.inst == inst {
		c.setInstance(nil)
	}
	c.stopping.Add(1)
	go func() {
		defer c.stopping.Done()
		inst.pc.Kill()
		inst.stderr.Flush() // an unfinished last line
	}()
}

// start launches a process (mu held).
func (c *Client) start(ctx context.Context) (*instance, error) {
	if len(c.checksum) == 0 {
		return nil, fmt.Errorf("plugin %s: %w: no SHA-256 recorded for %s", c.name, ErrStart, c.cmd.Path)
	}
	cmd := exec.Command(c.cmd.Path, c.cmd.Args...)
	cmd.Args[0] = c.cmd.display()
	cmd.Env = append([]string{}, c.cmd.Env...)
	// The plugin's stderr: go-plugin logs each line of the process's own stderr (JSON log
	// records, and plain lines: see slogLogger) and also copies it to Stderr; after the handshake
	// the plugin's os.Stderr is a stream to SyncStderr, whose lines are logged here. The last
	// lines of both are kept for the error of a start that fails.
	tail := &stderrTail{}
	rawStderr := &lineWriter{fn: tail.add}
	syncStderr := &lineWriter{fn: func(line string) {
		tail.add(line)
		if strings.TrimSpace(line) != "" {
			c.cfg.logger.Log(context.Background(), toSlog(plainLevel(hclog.Debug, line)), line, "plugin", c.name)
		}
	}}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.HostPlugins(),
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: c.checksum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLogger(c.cfg.logger, c.name, filepath.Base(c.cmd.display())),
		GRPCDialOptions:  sdk.GRPCDialOptions(),
		StartTimeout:     c.cfg.startTimeout,
		Stderr:           rawStderr,
		SyncStdout:       io.Discard,
		SyncStderr:       syncStderr,
	})
	c.starts.Add(1)
	// The stamp of the file go-plugin is about to hash: the file verified if the start succeeds.
	stamp, stampErr := stampFile(c.cmd.Path)
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			got := "unreadable"
			if sum, serr := FileSHA256(c.cmd.Path); serr == nil {
				got = hex.EncodeToString(sum)
			}
			c.cfg.logger.Error("plugin binary refused: checksum mismatch", "plugin", c.name, "path", c.cmd.Path,
				"want_sha256", hex.EncodeToString(c.checksum), "got_sha256", got)
			return nil, fmt.Errorf("plugin %s: %w: %s has SHA-256 %s, recorded %s; refusing to start it (the binary changed after its checksum was recorded)",
				c.name, ErrTampered, c.cmd.Path, got, hex.EncodeToString(c.checksum))
		}
		return nil, c.startError(cmd, tail, syncStderr, "", err)
	}
	inst := &instance{pc: pc, rpc: rpc, protocol: pc.NegotiatedVersion(), impls: map[string]any{}, stderr: syncStderr}
	if rc := pc.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	raw, err := rpc.Dispense(sdk.InfoName)
	if err != nil {
		pc.Kill()
		return nil, c.startError(cmd, tail, syncStderr, "dispense info", err)
	}
	ictx, cancel := context.WithTimeout(ctx, c.cfg.startTimeout)
	defer cancel()
	info, err := raw.(sdk.InfoService).Info(ictx, &sdk.InfoRequest{})
	if err != nil {
		pc.Kill()
		return nil, c.startError(cmd, tail, syncStderr, "info", err)
	}
	inst.info = info
	c.verified, c.verifiedOK = stamp, stampErr == nil
	c.cfg.logger.Debug("plugin started", "plugin", c.name, "pid", inst.pid, "protocol", inst.protocol, "version", info.Version)
	return inst, nil
}

// startError is the error of a start that failed at step (after the process was stopped): it
// quotes the last lines the process wrote to stderr, which say why far better than go-plugin's
// guesses (a plugin that exits before the handshake reads "Unrecognized remote plugin message",
// then a checklist of architectures and dynamic libraries).
func (c *Client) startError(cmd *exec.Cmd, tail *stderrTail, sync *lineWriter, step string, err error) error {
	if step != "" {
		err = fmt.Errorf("%s: %w", step, err)
	}
	sync.Flush()
	lines := tail.String()
	if lines == "" {
		return fmt.Errorf("plugin %s: %w: %s: %w", c.name, ErrStart, c.cmd, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "Failed to read any lines from plugin's stdout") || strings.Contains(msg, "plugin exited before we could connect") {
		msg = "the process ended before its handshake"
	}
	// pc.Kill has waited for the process (go-plugin's runner waits on cmd).
	if ps := cmd.ProcessState; ps != nil && ps.Exited() {
		msg += " (" + ps.String() + ")"
	}
	return fmt.Errorf("plugin %s: %w: %s: %s; its stderr ended with:\n%s", c.name, ErrStart, c.cmd, msg, lines)
}

// drop forgets inst and stops it in the background, calls in flight on it included.
func (c *Client) drop(inst *instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(inst)
}

// call runs fn against the plugin's implementation of kind, with the call timeout, and turns
// failures into errors that name the plugin and the method.
func (c *Client) call(ctx context.Context, kind sdk.Kind, method string, fn func(ctx context.Context, impl any) error) error {
	inst, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.release(inst)
	if inst.info.Kind != kind {
		return fmt.Errorf("plugin %s: %s: %w: it is a %s plugin, not a %s plugin", c.name, method, ErrKind, inst.info.Kind, kind)
	}
	c.mu.Lock()
	impl, ok := inst.impls[string(kind)]
	if !ok {
		impl, err = inst.rpc.Dispense(string(kind))
		if err == nil {
			inst.impls[string(kind)] = impl
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.drop(inst)
		return fmt.Errorf("plugin %s: %s: %w: dispense %s: %w", c.name, method, ErrStart, kind, err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.callTimeout)
	defer cancel()
	err = fn(cctx, impl)
	if err == nil {
		return nil
	}
	var remote *sdk.RemoteError
	transport := errors.As(err, &remote) && remote.Transport()
	// The plugin's side of the call times out too (gRPC sends the deadline along) and resets the
	// stream, which can reach this process before cctx's own timer has marked it done: a call
	// that fails once its deadline has passed timed out, whatever cctx says yet.
	// (The caller's own deadline, when it comes first, is the caller's.)
	deadline, _ := cctx.Deadline()
	late := !time.Now().Before(deadline)
	theirs, ok := ctx.Deadline()
	callers := ok && !theirs.After(deadline)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("plugin %s: %s: %w", c.name, method, ctx.Err())
	case late && callers:
		return fmt.Errorf("plugin %s: %s: %w", c.name, method, context.DeadlineExceeded)
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || late:
		c.cfg.logger.Error("plugin call timed out; stopping the process", "plugin", c.name, "method", method, "pid", inst.pid, "timeout", c.cfg.callTimeout)
		c.drop(inst)
		return fmt.Errorf("plugin %s: %s: %w after %v; the process (pid %d) was stopped and the next call starts a new one",
			c.name, method, ErrTimeout, c.cfg.callTimeout, inst.pid)
	case inst.pc.Exited() || (transport && status.Code(err) == codes.Unavailable):
		c.cfg.logger.Error("plugin process exited during a call", "plugin", c.name, "method", method, "pid", inst.pid, "err", err)
		c.drop(inst)
		return fmt.Errorf("plugin %s: %s: %w (pid %d): %w; the next call starts a new process", c.name, method, ErrCrashed, inst.pid, err)
	}
	return fmt.Errorf("plugin %s: %s: %w", c.name, method, err)
}

// peftCaller is a Client seen as an sdk.PEFT.
type peftCaller struct{ c *Client }

func (p peftCaller) Describe(ctx context.Context, req *sdk.DescribeRequest) (resp *sdk.DescribeResponse, err error) {
	err = p.c.call(ctx, sdk.KindPEFT, "Describe", func(ctx context.Context, impl any) error {
		resp, err = impl.(sdk.PEFT).Describe(ctx, req)
		return err
	})
	return resp, err
}

func (p peftCaller) Plan(ctx context.Context, req *sdk.PlanRequest) (resp *sdk.PlanResponse, err error) {
	err = p.c.call(ctx, sdk.KindPEFT, "Plan", func(ctx context.Context, impl any) error {
		resp, err = impl.(sdk.PEFT).Plan(ctx, req)
		return err
	})
	return resp, err
}

// selectorCaller is a Client seen as an sdk.Selector.
type selectorCaller struct{ c *Client }

func (s selectorCaller) Select(ctx context.Context, req *sdk.SelectRequest) (resp *sdk.SelectResponse, err error) {
	err = s.c.call(ctx, sdk.KindSelector, "Select", func(ctx context.Context, impl any) error {
		resp, err = impl.(sdk.Selector).Select(ctx, req)
		return err
	})
	return resp, err
}

// FileSHA256 returns the SHA-256 of a file.
func FileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

var (
	_ sdk.PEFT     = peftCaller{}
	_ sdk.Selector = selectorCaller{}
)
