package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/internal/buildinfo"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// serveOptions are the flags of s3t serve.
type serveOptions struct {
	addr, data, keysFile   string
	tlsCert, tlsKey        string
	databaseURL, blobURL   string
	allowPaths             bool
	trainWorkers           int
	compactEvery, jobsStop time.Duration
	sweepEvery             time.Duration
	drainDelay             time.Duration
	lease                  time.Duration
	debugAddr              string
	addrFile               string
	worker                 bool
	predictSpin            time.Duration
	pluginStart            time.Duration
	pluginCall             time.Duration
	pluginIdle             time.Duration
	pluginDir              string
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	var checkWorkers func() error // set with the flags below
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the s3t HTTP server on one machine (SQLite ledger and blobs in a data directory)",
		Long: `Serve the s3t API: backbones, models, sample uploads, training, inference and deletions with
receipts. State lives in the data directory: the SQLite ledger (ledger.db), the blob bucket
(blobs/) and the training worker's local stage checkpoints (work/); S3T_DATABASE_URL and
S3T_BLOB_URL move the ledger to PostgreSQL and the blobs to S3. Training jobs run in this
process (--train-workers of them at once; 0: none, for a serving replica).
Without an API keys file the server allows every request and listens on loopback only. With
keys on another address, serve HTTPS (--tls-cert, --tls-key) or put a TLS-terminating proxy in
front: a key is a bearer token.
SIGINT or SIGTERM shut it down gracefully: in-flight requests finish, and running training
jobs go on for up to --jobs-stop-timeout, then stop; their finished stages stay published and
they resume after them at the next start; --drain-delay first keeps serving for that long with
/readyz answering 503, for a load balancer to stop sending requests. SIGHUP reads the keys file
again (a key added or revoked; a file that does not load leaves the keys in use).` + serverEnvHelp("S3T_ADDR", "S3T_DATA", "S3T_KEYS", "S3T_TLS_CERT", "S3T_TLS_KEY", "S3T_DATABASE_URL", "S3T_BLOB_URL", "S3T_TRAIN_WORKERS") +
			fmt.Sprintf("  %-12s %s\n", plugins.EnvPluginDir, "the plugin directory the server's plugin host reads (--plugin-dir; default $S3T_DATA/plugins)"),
		Example: `  s3t serve --addr 127.0.0.1:8080 --data ./s3t-data`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkWorkers(); err != nil {
				return err
			}
			// Checked before the data directory is made and migrated (a bad address used to
			// fail only then, exit 1).
			host, _, err := net.SplitHostPort(o.addr)
			if err != nil {
				return fmt.Errorf("%w: --addr (or S3T_ADDR) %q: want HOST:PORT: %w", errUsage, o.addr, err)
			}
			if o.keysFile == "" && !server.LoopbackHost(host) {
				return fmt.Errorf("%w: --addr (or S3T_ADDR) %q: %w", errUsage, o.addr, server.ErrOpenNonLoopback)
			}
			if (o.tlsCert == "") != (o.tlsKey == "") {
				return fmt.Errorf("%w: --tls-cert and --tls-key (S3T_TLS_CERT, S3T_TLS_KEY) go together: a certificate and its private key", errUsage)
			}
			if o.predictSpin < 0 {
				return fmt.Errorf("%w: --predict-spin %s: want 0 (no polling) or more", errUsage, o.predictSpin)
			}
			// 0 or less used to mean each one's default, silently.
			for _, t := range []struct {
				flag string
				d    time.Duration
			}{{"--plugin-start-timeout", o.pluginStart}, {"--plugin-call-timeout", o.pluginCall}, {"--plugin-idle-timeout", o.pluginIdle}} {
				if t.d <= 0 {
					return fmt.Errorf("%w: %s %s: want more than 0", errUsage, t.flag, t.d)
				}
			}
			if o.databaseURL != "" {
				// A SQLite path here would run a ledger no data directory lock guards.
				if err := requirePostgres("s3t serve --database-url", o.databaseURL); err != nil {
					return err
				}
			}
			if o.drainDelay < 0 {
				return fmt.Errorf("%w: --drain-delay %s: want 0 or more", errUsage, o.drainDelay)
			}
			if o.sweepEvery <= 0 {
				return fmt.Errorf("%w: --sweep-every %s: want more than 0", errUsage, o.sweepEvery)
			}
			return serve(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.addr, "addr", env("S3T_ADDR"), "listen address (S3T_ADDR)")
	f.StringVar(&o.data, "data", env("S3T_DATA"), "data directory (S3T_DATA)")
	f.StringVar(&o.keysFile, "keys", env("S3T_KEYS"), "API keys file (S3T_KEYS)")
	f.StringVar(&o.tlsCert, "tls-cert", env("S3T_TLS_CERT"), "serve HTTPS with this certificate chain (PEM; S3T_TLS_CERT), loaded again when it changes; with --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", env("S3T_TLS_KEY"), "the private key of --tls-cert (PEM; S3T_TLS_KEY)")
	f.StringVar(&o.databaseURL, "database-url", env("S3T_DATABASE_URL"), "ledger database URL (S3T_DATABASE_URL; default SQLite in --data)")
	f.StringVar(&o.blobURL, "blob-url", env("S3T_BLOB_URL"), "blob bucket URL (S3T_BLOB_URL; default file:// under --data)")
	hideDefaults(f, "database-url", "blob-url")
	f.BoolVar(&o.allowPaths, "allow-paths", false, "let clients register backbones from paths on this machine")
	checkWorkers = trainWorkersFlag(c, &o.trainWorkers, 0, "training jobs run at once in this process (S3T_TRAIN_WORKERS; 0: serve only)")
	f.DurationVar(&o.compactEvery, "compact-every", time.Minute, "after deletions, rewrite the SQLite ledger this often so no copy of a deleted row survives in free pages (0: never)")
	f.BoolVar(&o.worker, "worker", true, "run training jobs in this process (--worker=false: serve only, the same as --train-workers 0)")
	f.DurationVar(&o.lease, "lease", training.DefaultLease, "a training job's lease: a job whose worker stops renewing it is requeued after about twice this")
	f.StringVar(&o.addrFile, "addr-file", "", "write the address the server listens on to this file once it listens (with --addr HOST:0, a free port)")
	f.StringVar(&o.debugAddr, "debug-addr", "", "serve Go's profiler (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060 (off by default)")
	f.DurationVar(&o.predictSpin, "predict-spin", serving.DefaultSpin, "after a lone prediction, how long the helpers (one per core up to 2 cores, then one per 2 cores) keep polling for the next before they sleep, so that a lone prediction's shards start on several cores at once (waking a sleeping core costs more than a small model's shard on a virtual machine); helpers yield to any other work and stop under load. 0: sleep at once. Costs up to this much CPU per helper after the last prediction")
	f.StringVar(&o.pluginDir, "plugin-dir", "", "plugin directory: installed plugin binaries and their catalog, as s3t plugin --plugin-dir (default $"+plugins.EnvPluginDir+" or DATA/plugins)")
	f.DurationVar(&o.pluginStart, "plugin-start-timeout", plugins.DefaultStartTimeout, "how long a plugin process may take to start and complete its handshake")
	f.DurationVar(&o.pluginCall, "plugin-call-timeout", plugins.DefaultCallTimeout, "how long one plugin call (a plan, a selection) may take; the process is then stopped and the next call starts a new one")
	f.DurationVar(&o.pluginIdle, "plugin-idle-timeout", plugins.DefaultIdleTimeout, "how long a plugin process may go without a call before it is stopped; the next call starts a new one")
	f.DurationVar(&o.jobsStop, "jobs-stop-timeout", 10*time.Second, "at shutdown, how long running training jobs may take to finish before they are interrupted")
	f.DurationVar(&o.drainDelay, "drain-delay", 0, "at shutdown, how long to go on serving with /readyz answering 503 before the listener closes, so that a load balancer stops sending requests first (0: close at once)")
	f.DurationVar(&o.sweepEvery, "sweep-every", 2*time.Second, "on PostgreSQL with training workers, how often local stage checkpoints are checked against the ledger (deletions made through other processes)")
	return c
}

// servePluginConfig is the plugin host's configuration of s3t serve over the data directory
// dir: the plugin directory is --plugin-dir, else $S3T_PLUGIN_DIR, else dir/plugins.
func servePluginConfig(o serveOptions, dir string) (plugins.Config, error) {
	cfg := plugins.Config{DataDir: dir, Logger: slog.Default(), StartTimeout: o.pluginStart, CallTimeout: o.pluginCall,
		IdleTimeout: o.pluginIdle}
	if o.pluginDir != "" {
		d, err := filepath.Abs(o.pluginDir)
		if err != nil {
			return cfg, fmt.Errorf("serve: --plugin-dir: %w", err)
		}
		cfg.Dir = d
	}
	if cfg.Dir == "" {
		cfg.Dir = plugins.PluginDir(dir)
	}
	return cfg, nil
}

// warnOpenDataDir warns when other users may enter the data directory dir: the server makes it
// 0700, but one made before (install -d, systemd's StateDirectory=, a volume) is often 0755,
// and the ledger and blobs in it are created readable by all under the usual umask 022.
func warnOpenDataDir(dir string) {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	slog.Warn("the data directory is open to other users: the samples in its ledger and the checkpoints in its blobs are readable by them; chmod 700 it (systemd: StateDirectoryMode=0700)",
		"data", dir, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
}

// reloadKeysOnHUP reads the keys file again at each signal on hup and gives its keys to srv,
// logging the names added and removed; a file that does not load leaves the keys in use.
func reloadKeysOnHUP(ctx context.Context, hup <-chan os.Signal, srv *server.Server, file string, keys []server.Key) {
	names := func(ks []server.Key) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			out[i] = k.Name
		}
		return out
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if file == "" {
			slog.Warn("SIGHUP: no keys file to read again (the server runs without --keys)")
			continue
		}
		next, err := server.LoadKeys(file)
		if err == nil {
			err = srv.ReloadKeys(next)
		}
		if err != nil {
			slog.Error("SIGHUP: the keys file does not load: the keys in use stay", "keys", file, "err", err)
			continue
		}
		before, after := names(keys), names(next)
		var added, removed []string
		for _, n := range after {
			if !slices.Contains(before, n) {
				added = append(added, n)
			}
		}
		for _, n := range before {
			if !slices.Contains(after, n) {
				removed = append(removed, n)
			}
		}
		slog.Info("API keys read again (SIGHUP)", "keys", len(next), "added", added, "removed", removed)
		keys = next
	}
}

// lockDataDir takes an exclusive lock on the data directory, so that one embedded server owns
// its SQLite ledger and its training jobs (the lock dies with the process, even on kill -9).
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another s3t process: %w", dir, err)
	}
	return f, nil
}

// serve opens the data directory, migrates the ledger, finishes interrupted purges, starts the
// training worker and serves until ctx is cancelled.
func serve(ctx context.Context, o serveOptions) error {
	var tlsConfig *tls.Config
	if o.tlsCert != "" { // before the data directory is made: a bad pair fails the start as is
		var err error
		if tlsConfig, err = server.TLSFiles(o.tlsCert, o.tlsKey, slog.Default()); err != nil {
			return fmt.Errorf("serve: --tls-cert, --tls-key: %w", err)
		}
	}
	dir, err := filepath.Abs(o.data)
	if err != nil {
		return fmt.Errorf("serve: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("serve: data directory: %w", err)
	}
	warnOpenDataDir(dir)
	var keys []server.Key
	if o.keysFile != "" {
		if keys, err = server.LoadKeys(o.keysFile); err != nil {
			return err
		}
	}

	embedded := o.databaseURL == ""
	dsn := o.databaseURL
	if embedded {
		lock, err := lockDataDir(dir)
		if err != nil {
			return err
		}
		defer lock.Close()
		dsn = store.SQLiteDSN(dir)
	}
	if !embedded && o.worker && o.trainWorkers > 0 {
		// A replica that trains on PostgreSQL writes DATA/work: one process per folder, as
		// s3t worker's --work-dir (two replicas started with the same --data shared it).
		lock, err := lockWorkDir(filepath.Join(dir, "work"))
		if err != nil {
			return err
		}
		defer lock.Close()
	}
	if !embedded && o.blobURL == "" {
		// A bucket under --data would be this replica's alone: the other processes would not
		// see its backbones and checkpoints, and its purges would miss theirs.
		return fmt.Errorf("%w: s3t serve on PostgreSQL needs S3T_BLOB_URL (or --blob-url): the bucket every process shares", errUsage)
	}
	burl, err := store.BlobURL(dir, o.blobURL)
	if err != nil {
		return err
	}
	workers := o.trainWorkers
	if !o.worker {
		workers = 0
	}
	// Embedded, this process holds the data directory locked: it is the ledger's only writer.
	be, err := openBackend(ctx, backendConfig{DSN: dsn, BlobURL: burl, WorkDir: filepath.Join(dir, "work"), TrainWorkers: workers, Lease: o.lease,
		Exclusive: embedded})
	if err != nil {
		return err
	}
	defer be.Close()
	st, blobs, jobs, runner := be.st, be.blobs, be.jobs, be.runner
	svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Spin: spinConfig(o.predictSpin)})
	if err != nil {
		return err
	}
	defer svc.Close()
	// PEFT and selector plugins (the built-ins and those installed in DATA/plugins) plan new
	// models and choose their slice orders out of process, started on first use; training and
	// serving read the stored plan and orders.
	pcfg, err := servePluginConfig(o, dir)
	if err != nil {
		return err
	}
	mgr, err := plugins.Open(pcfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer mgr.Close()
	// Predictions and training run ONNX Runtime: a library that cannot load is said now, and
	// keeps the server not ready, rather than found at the first prediction (a 500 then).
	rtErr := ort.Init()
	if rtErr != nil {
		slog.Error("ONNX Runtime cannot be loaded: the server is not ready, predictions answer 503 and training waits, until it starts with a library that loads (S3T_ORT_LIBRARY; make deps installs one)", "err", rtErr)
	}
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Keys: keys, AllowPaths: o.allowPaths, Trainer: runner, Serving: svc, QueueDepth: jobs.Depth, Plugins: mgr, Selectors: mgr, RuntimeError: rtErr, TLS: tlsConfig, DrainDelay: o.drainDelay})
	if err != nil {
		return err
	}
	ln, err := srv.Listen(o.addr)
	if err != nil {
		return err
	}
	// SIGHUP reads the keys file again (a key added or revoked without a restart); before, its
	// default action ended the server at once, as a kill would (systemctl reload, a closed
	// terminal).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadKeysOnHUP(ctx, hup, srv, o.keysFile, keys)
	if o.addrFile != "" {
		if err := writeFileAtomic(o.addrFile, []byte(ln.Addr().String()+"\n")); err != nil {
			ln.Close()
			return fmt.Errorf("serve: --addr-file: %w", err)
		}
	}
	if embedded && workers > 0 {
		// This process holds the data directory: jobs left running belong to a dead process.
		// (Replicas on PostgreSQL never do this: they do not own the queue.)
		if _, err := jobs.RecoverOrphans(ctx); err != nil {
			return err
		}
	}
	if !embedded && workers > 0 {
		// Deletions committed through other processes purge the shared stores; this process's
		// local stage checkpoints only the sweep erases (as s3t worker's), before it takes jobs
		// and then every --sweep-every.
		sw := &localSweeper{st: st, runner: runner, root: filepath.Join(dir, "work", "models"), holder: be.cfg.Holder, kept: map[string]keptMark{}}
		if _, err := sw.sweep(ctx); err != nil {
			return fmt.Errorf("serve: check local checkpoints: %w", err)
		}
		go sw.loop(ctx, o.sweepEvery)
	} else if _, err := runner.SweepWork(ctx); err != nil {
		// One process: its deletions stop its jobs and erase their folders, but a kill between
		// a model's deletion and its purge, or a job that outlived the purge, can leave one.
		return fmt.Errorf("serve: check local checkpoints: %w", err)
	}
	if err := be.startJobs(ctx); err != nil {
		return err
	}
	if embedded && o.compactEvery > 0 {
		go compactLoop(ctx, st, o.compactEvery)
	}
	if !embedded {
		slog.Info("on PostgreSQL --compact-every does nothing: a deleted sample's row stays in the table's pages until a vacuum reuses them; schedule VACUUM (FULL) samples where the erasure must reach the disk")
	}
	if o.debugAddr != "" {
		if err := serveDebug(ctx, o.debugAddr); err != nil {
			return err
		}
	}
	slog.Info("s3t serve", "version", buildinfo.Version(), "data", dir, "keys", len(keys), "train_workers", workers, "database", databaseKind(dsn))
	if embedded && workers == 0 {
		// s3t worker needs PostgreSQL: nothing else can work this data directory's queue.
		slog.Warn("no training workers: training requests are queued, and run only once this data directory is served with --train-workers above 0")
	}
	err = srv.Serve(ctx, ln)
	if workers > 0 {
		slog.Info("stopping training jobs", "timeout", o.jobsStop)
	}
	be.stopJobs(ctx, o.jobsStop)
	slog.Info("stopped")
	return err
}

// compactLoop rewrites the SQLite ledger (store.Compact) every interval when deletions
// committed since the last rewrite: secure_delete zeroes a deleted row in place, but only a
// rewrite is sure to drop the copies B-tree rebalancing leaves in free space. The first tick
// after a start rewrites it whatever this process deleted: deletions committed before a kill
// may not have been rewritten, and nothing recorded says so.
func compactLoop(ctx context.Context, st *store.Store, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last int64 = -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Erasures only grows: a count of receipts, which a model's deletion lowers, could come
		// back to its last value after new deletions, and the rewrite was skipped.
		n := st.Erasures()
		if n == last {
			continue
		}
		start := time.Now()
		if err := st.Compact(ctx); err != nil && !errors.Is(err, context.Canceled) {
			slog.Warn("compact ledger", "err", err)
			continue
		}
		if last < 0 {
			slog.Info("ledger compacted, once after the start (deletions before it may not have been)", "took", time.Since(start).Round(time.Millisecond))
		} else {
			slog.Info("ledger compacted after deletions", "erasures", n, "took", time.Since(start).Round(time.Millisecond))
		}
		last = n
	}
}

// spinConfig maps the --predict-spin flag (0: off) to serving.Config.Spin (0: the default,
// negative: off).
func spinConfig(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
