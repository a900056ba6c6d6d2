package plugins

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/s3t-dev/s3t/sdk"
)

// Config configures a Manager. The zero value works: built-ins run from this executable, the
// plugin directory comes from the environment (see Env).
type Config struct {
	// DataDir is s3t's data directory; plans are cached under DataDir/plans. Default DataDir().
	DataDir string
	// Dir is the plugin directory. Default PluginDir(DataDir).
	Dir string
	// Self is how a built-in starts: the plugin's name is appended to Self.Args. Default: this
	// executable with the arguments "plugin run" (`s3t plugin run peft.lora`), started on Linux
	// from /proc/self/exe, so that replacing the executable under a running host (an upgrade)
	// leaves its built-ins running its own code until it restarts.
	Self *Command
	// Builtins are the plugins compiled into Self. Default Builtins().
	Builtins *Registry
	// Logger receives plugin stderr and host events. Default slog.Default().
	Logger *slog.Logger
	// CallTimeout bounds every plugin call. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// StartTimeout bounds every start. Default DefaultStartTimeout.
	StartTimeout time.Duration
	// IdleTimeout stops a plugin process that has had no call in flight for that long; its
	// next call starts a new one. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Status is a plugin's state as List shows it.
type Status string

// The statuses.
const (
	// StatusReady means the plugin can start: its binary matches its checksum.
	StatusReady Status = "ready"
	// StatusRunning means a process is running.
	StatusRunning Status = "running"
	// StatusTampered means the binary no longer matches the recorded SHA-256; it will not run.
	StatusTampered Status = "tampered"
	// StatusMissing means the catalog names a binary that is gone.
	StatusMissing Status = "missing"
	// StatusNotInstalled means a file in the plugin directory has no catalog record; install
	// it with `s3t plugin install`.
	StatusNotInstalled Status = "not installed"
	// StatusShadowed means an installed plugin has a built-in's name; the built-in wins.
	StatusShadowed Status = "shadowed"
)

// Entry is one plugin as List shows it.
type Entry struct {
	// Name is the plugin's id ("" for a file that was never installed).
	Name string `json:"name"`
	// Kind is what it provides.
	Kind sdk.Kind `json:"kind,omitempty"`
	// Version is the plugin's version.
	Version string `json:"version,omitempty"`
	// Protocol is the plugin protocol version: negotiated when running, else the one recorded
	// at install (built-ins: this SDK's).
	Protocol int `json:"protocol,omitempty"`
	// SHA256 is the binary's recorded SHA-256 (hex).
	SHA256 string `json:"sha256,omitempty"`
	// Path is the binary.
	Path string `json:"path"`
	// Builtin marks the plugins shipped inside s3t.
	Builtin bool `json:"builtin"`
	// Status says whether it can run.
	Status Status `json:"status"`
	// Detail explains a status other than ready or running.
	Detail string `json:"detail,omitempty"`
}

// Manager is the plugin host: the built-ins, the plugins installed in the plugin directory
// with their checksums, one Client per plugin (started on first use, stopped once idle for
// Config.IdleTimeout), and the plan cache. Safe for concurrent use.
type Manager struct {
	cfg     Config
	selfSum func() ([]byte, error) // the built-ins' executable's SHA-256, read on first use
	// selfStamp is the stamp of the executable selfSum hashed (ok false: none), once selfSum
	// has returned.
	selfStamp func() (fileStamp, bool)
	plans     *planCache

	mu      sync.Mutex
	records []Record
	catalog catalogStamp // of the catalog file records were read from
	clients map[string]*Client
	closed  bool
}

// catalogStamp identifies a version of the catalog file: its modification time and size.
type catalogStamp struct {
	mod  time.Time
	size int64
}

func stampCatalog(dir string) catalogStamp {
	fi, err := os.Stat(filepath.Join(dir, CatalogFile))
	if err != nil {
		return catalogStamp{}
	}
	return catalogStamp{fi.ModTime(), fi.Size()}
}

// refreshLocked reads the catalog again when its file changed since it was read (mu held): a
// plugin installed or upgraded by another process (`s3t plugin install` beside a running
// s3t serve) is used from the next call on, without a restart. A running plugin whose record
// changed or went is stopped; its next call starts the binary the catalog names now.
func (m *Manager) refreshLocked() {
	st := stampCatalog(m.cfg.Dir)
	if st == m.catalog {
		return
	}
	recs, err := readCatalog(m.cfg.Dir)
	if err != nil {
		m.cfg.Logger.Warn("plugin catalog changed but is unreadable; keeping the one read before", "err", err)
		return
	}
	for name, c := range m.clients {
		if _, builtin := m.cfg.Builtins.Lookup(name); builtin {
			continue
		}
		old, _ := m.record(name)
		i := slices.IndexFunc(recs, func(r Record) bool { return r.Name == name })
		if i < 0 || recs[i].SHA256 != old.SHA256 || recs[i].File != old.File {
			c.Close()
			delete(m.clients, name)
		}
	}
	m.records, m.catalog = recs, st
}

// Open returns a Manager over cfg's plugin directory, creating it when missing, and reads its
// catalog. The SHA-256 of the built-ins' executable, computed when first needed, is checked
// before every start like any plugin's.
func Open(cfg Config) (*Manager, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DataDir()
	}
	if cfg.Dir == "" {
		cfg.Dir = PluginDir(cfg.DataDir)
	}
	if cfg.Builtins == nil {
		cfg.Builtins = Builtins()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Self == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("plugins: locating this executable for the built-ins: %w", err)
		}
		cfg.Self = &Command{Path: runningExecutable(exe), Args: []string{"plugin", "run"}, shown: exe}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	// Hashing the executable (tens of MB) waits for the first built-in a caller starts or
	// lists: a server that creates no model never needs it.
	var (
		selfStamp   fileStamp
		selfStamped bool
	)
	selfSum := sync.OnceValues(func() ([]byte, error) {
		st, serr := stampFile(cfg.Self.Path)
		sum, err := FileSHA256(cfg.Self.Path)
		if err != nil {
			return nil, fmt.Errorf("plugins: checksum of %s: %w", cfg.Self.display(), err)
		}
		selfStamp, selfStamped = st, serr == nil
		return sum, nil
	})
	st := stampCatalog(cfg.Dir)
	recs, err := readCatalog(cfg.Dir)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, selfSum: selfSum, selfStamp: func() (fileStamp, bool) { return selfStamp, selfStamped },
		records: recs, catalog: st, clients: map[string]*Client{},
		plans: newPlanCache(filepath.Join(cfg.DataDir, "plans"), cfg.Logger)}, nil
}

// Dir returns the plugin directory.
func (m *Manager) Dir() string { return m.cfg.Dir }

// Close stops every plugin process. Later calls fail with ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	clients := m.clients
	m.clients, m.closed = map[string]*Client{}, true
	m.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	return nil
}

// builtinCommand returns the command that serves a built-in.
func (m *Manager) builtinCommand(name string) Command {
	self := *m.cfg.Self
	self.Args = append(slices.Clone(self.Args), name)
	return self
}

// record returns the catalog record of name (mu held).
func (m *Manager) record(name string) (Record, bool) {
	i := slices.IndexFunc(m.records, func(r Record) bool { return r.Name == name })
	if i < 0 {
		return Record{}, false
	}
	return m.records[i], true
}

// Client returns the Client of the plugin called name: a built-in, else an installed plugin.
func (m *Manager) Client(name string) (*Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("plugin %s: %w", name, ErrClosed)
	}
	m.refreshLocked()
	if c, ok := m.clients[name]; ok {
		return c, nil
	}
	opts := []ClientOption{WithLogger(m.cfg.Logger), WithCallTimeout(m.cfg.CallTimeout), WithStartTimeout(m.cfg.StartTimeout),
		WithIdleTimeout(m.cfg.IdleTimeout)}
	var c *Client
	if p, ok := m.cfg.Builtins.Lookup(name); ok {
		sum, err := m.selfSum()
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", name, err)
		}
		c = NewClient(name, m.builtinCommand(name), sum, opts...)
		c.version = p.Version
		// The executable was just hashed: checking that it is still that file costs a stat.
		c.verified, c.verifiedOK = m.selfStamp()
	} else if r, ok := m.record(name); ok {
		c = NewClient(name, Command{Path: filepath.Join(m.cfg.Dir, r.File)}, decodeHex(r.SHA256), opts...)
		c.version = r.Version
	} else {
		return nil, fmt.Errorf("plugin %s: %w (built-ins: %s; installed: %s)", name, ErrNotFound,
			strings.Join(m.cfg.Builtins.Names(), ", "), strings.Join(m.installedNames(), ", "))
	}
	m.clients[name] = c
	return c, nil
}

func (m *Manager) installedNames() []string {
	var out []string
	for _, r := range m.records {
		out = append(out, r.Name)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// PEFT returns the PEFT plugin called name; its calls go to the plugin process.
func (m *Manager) PEFT(name string) (sdk.PEFT, error) {
	c, err := m.Client(name)
	if err != nil {
		return nil, err
	}
	return c.PEFT(), nil
}

// Selector returns the selector plugin called name; its calls go to the plugin process.
func (m *Manager) Selector(name string) (sdk.Selector, error) {
	sel, _, err := m.SelectorRef(name)
	return sel, err
}

// SelectorRef is Selector, with the build of the plugin whose process its calls go to: every
// answer the selector gives comes from that build (a plugin upgraded meanwhile fails the calls
// instead).
func (m *Manager) SelectorRef(name string) (sdk.Selector, Ref, error) {
	c, err := m.Client(name)
	if err != nil {
		return nil, Ref{}, err
	}
	return c.Selector(), c.Ref(), nil
}

// List returns every plugin: the built-ins, then the installed ones by name, then files in the
// plugin directory that were never installed. It starts nothing; installed binaries are hashed
// to report tampering.
func (m *Manager) List(context.Context) ([]Entry, error) {
	m.mu.Lock()
	m.refreshLocked()
	recs := slices.Clone(m.records)
	clients := make(map[string]*Client, len(m.clients))
	for k, v := range m.clients {
		clients[k] = v
	}
	m.mu.Unlock()
	running := func(name string, e *Entry) {
		if c, ok := clients[name]; ok && c.Pid() != 0 {
			e.Status, e.Protocol = StatusRunning, c.Protocol()
		}
	}
	var out []Entry
	sum, err := m.selfSum()
	if err != nil {
		return nil, err
	}
	selfHex := hex.EncodeToString(sum)
	for _, name := range m.cfg.Builtins.Names() {
		p, _ := m.cfg.Builtins.Lookup(name)
		e := Entry{Name: name, Kind: p.Kind(), Version: p.Version, Protocol: sdk.ProtocolVersion, SHA256: selfHex,
			Path: m.builtinCommand(name).String(), Builtin: true, Status: StatusReady}
		running(name, &e)
		out = append(out, e)
	}
	known := map[string]bool{CatalogFile: true}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range recs {
		known[r.File] = true
		path := filepath.Join(m.cfg.Dir, r.File)
		e := Entry{Name: r.Name, Kind: r.Kind, Version: r.Version, Protocol: r.Protocol, SHA256: r.SHA256, Path: path, Status: StatusReady}
		switch sum, err := FileSHA256(path); {
		case errors.Is(err, fs.ErrNotExist):
			e.Status, e.Detail = StatusMissing, "the binary is gone; reinstall it"
		case err != nil:
			e.Status, e.Detail = StatusMissing, err.Error()
		case hex.EncodeToString(sum) != r.SHA256:
			e.Status, e.Detail = StatusTampered, "SHA-256 is now "+hex.EncodeToString(sum)+"; refusing to run it"
		}
		if _, ok := m.cfg.Builtins.Lookup(r.Name); ok {
			e.Status, e.Detail = StatusShadowed, "a built-in has this name and wins"
		} else if e.Status == StatusReady {
			running(r.Name, &e)
		}
		out = append(out, e)
	}
	ents, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	for _, de := range ents {
		if known[de.Name()] || de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		out = append(out, Entry{Path: filepath.Join(m.cfg.Dir, de.Name()), Status: StatusNotInstalled,
			Detail: "no recorded checksum; run `s3t plugin install` on it"})
	}
	return out, nil
}

// InstallOption configures Install.
type InstallOption func(*installConfig)

type installConfig struct{ replace bool }

// Replace lets Install replace an installed plugin of the same name (an upgrade). Default: a
// second install of a name fails with ErrDuplicate.
func Replace() InstallOption { return func(c *installConfig) { c.replace = true } }

// Install copies the plugin binary at path into the plugin directory and records it in the
// catalog with its SHA-256, after starting it once to ask what it is (its checksum is taken
// first and checked at that start). A name that a built-in or an installed plugin already has
// fails with ErrDuplicate (see Replace).
func (m *Manager) Install(ctx context.Context, path string, opts ...InstallOption) (*Entry, error) {
	var ic installConfig
	for _, o := range opts {
		o(&ic)
	}
	src, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("plugin install %s: %w", path, err)
	}
	sum, err := FileSHA256(src)
	if err != nil {
		return nil, fmt.Errorf("plugin install %s: %w", path, err)
	}
	probe := NewClient(filepath.Base(src), Command{Path: src}, sum,
		WithLogger(m.cfg.Logger), WithCallTimeout(m.cfg.CallTimeout), WithStartTimeout(m.cfg.StartTimeout))
	info, err := probe.Info(ctx)
	protocol := probe.Protocol()
	if err == nil && info.Kind == sdk.KindPEFT {
		// A PEFT plugin describes itself too: both names must agree, or its Describe (its
		// config schema and defaults) would be another plugin's.
		var d *sdk.DescribeResponse
		if d, err = probe.PEFT().Describe(ctx, &sdk.DescribeRequest{}); err == nil && d.Name != info.Name {
			err = fmt.Errorf("%w: it is served as %q but describes itself as %q", sdk.ErrInvalidPlugin, info.Name, d.Name)
		}
	}
	probe.Close()
	if err != nil {
		return nil, fmt.Errorf("plugin install %s: %w", path, err)
	}
	// The name becomes a file name in the plugin directory: a plugin built with another SDK
	// could report "../x".
	if err := sdk.ValidName(info.Name, info.Kind); err != nil {
		return nil, fmt.Errorf("plugin install %s: the plugin reports %w", path, err)
	}
	if _, ok := m.cfg.Builtins.Lookup(info.Name); ok {
		return nil, fmt.Errorf("plugin install %s: %w: %s is a built-in", path, ErrDuplicate, info.Name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("plugin install %s: %w", path, ErrClosed)
	}
	m.refreshLocked()
	if old, ok := m.record(info.Name); ok && !ic.replace {
		return nil, fmt.Errorf("plugin install %s: %w: %s %s is already installed (SHA-256 %s); pass --replace to upgrade",
			path, ErrDuplicate, old.Name, old.Version, old.SHA256)
	}
	file := info.Name
	copySum, err := copyExecutable(src, filepath.Join(m.cfg.Dir, file))
	if err != nil {
		return nil, fmt.Errorf("plugin install %s: %w", path, err)
	}
	if !bytes.Equal(copySum, sum) {
		return nil, fmt.Errorf("plugin install %s: %w: the file changed while it was copied", path, ErrTampered)
	}
	rec := Record{Name: info.Name, Kind: info.Kind, Version: info.Version, Protocol: protocol, File: file,
		SHA256: hex.EncodeToString(sum), Installed: time.Now().UTC(), Source: src}
	recs := slices.DeleteFunc(slices.Clone(m.records), func(r Record) bool { return r.Name == rec.Name })
	recs = append(recs, rec)
	if err := writeCatalog(m.cfg.Dir, recs); err != nil {
		return nil, fmt.Errorf("plugin install %s: %w", path, err)
	}
	m.records, m.catalog = recs, stampCatalog(m.cfg.Dir)
	if c, ok := m.clients[rec.Name]; ok {
		c.Close()
		delete(m.clients, rec.Name)
	}
	m.cfg.Logger.Info("plugin installed", "plugin", rec.Name, "version", rec.Version, "sha256", rec.SHA256)
	return &Entry{Name: rec.Name, Kind: rec.Kind, Version: rec.Version, Protocol: rec.Protocol, SHA256: rec.SHA256,
		Path: filepath.Join(m.cfg.Dir, file), Status: StatusReady}, nil
}

// Plan returns the plan of the PEFT plugin called name for a manifest and config, validated
// against the manifest (sdk.ValidatePlan). Plans are cached by (plugin checksum, manifest,
// config), in memory and under DataDir/plans, so a plugin is consulted when a model is created
// with a new combination and never on a hot path. A cached plan is returned only
// while the plugin's binary still has its recorded SHA-256 (ErrTampered otherwise).
func (m *Manager) Plan(ctx context.Context, name string, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	plan, _, err := m.PlanRef(ctx, name, req)
	return plan, err
}

// PlanRef is Plan, with the build of the plugin that made the plan (a cached plan's too: the
// cache is keyed by the build's checksum).
func (m *Manager) PlanRef(ctx context.Context, name string, req *sdk.PlanRequest) (*sdk.PlanResponse, Ref, error) {
	c, err := m.Client(name)
	if err != nil {
		return nil, Ref{}, err
	}
	key, err := PlanKey(name, c.Checksum(), &req.Manifest, req.Config)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("plugin %s: plan: %w", name, err)
	}
	if plan, ok := m.plans.get(key); ok {
		// A cached plan came from the verified binary, but a binary that changed since fails
		// here as it would fail a call (ErrTampered), whether or not its plan is cached.
		if err := c.verify(); err != nil {
			return nil, Ref{}, err
		}
		return plan, c.Ref(), nil
	}
	plan, err := c.PEFT().Plan(ctx, req)
	if err != nil {
		return nil, Ref{}, err
	}
	if err := sdk.ValidatePlan(&req.Manifest, plan); err != nil {
		return nil, Ref{}, fmt.Errorf("plugin %s: plan: %w", name, err)
	}
	m.plans.put(key, plan)
	return plan, c.Ref(), nil
}
