package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/store"
)

// clusterBenchOptions are the flags of s3t bench cluster.
type clusterBenchOptions struct {
	databaseURL, blobURL           string
	shards, slices, samples, epoch int
	deletions, clients, runs       int
	pin                            bool
}

// clusterBenchResult is what s3t bench cluster reports (medians over the runs).
type clusterBenchResult struct {
	Runs        int       `json:"runs"`
	Train1      []float64 `json:"train_1_worker_s"`
	Train2      []float64 `json:"train_2_workers_s"`
	Speedup     float64   `json:"speedup"` // median(Train1) / median(Train2)
	Pinned      bool      `json:"pinned"`
	Deletions   int       `json:"deletions"`
	DeletePerS  float64   `json:"deletions_per_s"`
	DeleteP50Ms float64   `json:"delete_p50_ms"`
	DeleteP99Ms float64   `json:"delete_p99_ms"`
}

func newBenchClusterCmd() *cobra.Command {
	var o clusterBenchOptions
	var asJSON bool
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Training wall time with 1 vs 2 workers, and deletion throughput with two replicas, on PostgreSQL",
		Long: `Run a small cluster of real processes against a PostgreSQL server (a fresh schema per run,
dropped afterwards) and a bucket (--blob-url, default a file:// folder in a temporary directory):
one s3t serve replica (--train-workers 0) and 1, then 2, s3t worker processes, each held to one
core (GOMAXPROCS=1 and, with --pin where taskset exists, taskset -c N: each stands for one
machine). It reports the wall time of training a --shards model from StartTraining until every
job is done, and the ratio. Then a second replica starts and --clients clients delete
--deletions samples concurrently through both replicas: throughput and latency p50/p99.`,
		Example: `  S3T_DATABASE_URL=postgres://s3t@127.0.0.1:5432/s3t s3t bench cluster --runs 3`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := requirePostgres("s3t bench cluster", o.databaseURL); err != nil {
				return err
			}
			if o.runs < 1 || o.shards < 2 || o.clients < 1 {
				return fmt.Errorf("%w: --runs >= 1, --shards >= 2 and --clients >= 1", errUsage)
			}
			res, err := runClusterBench(c.Context(), c.ErrOrStderr(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), res)
			}
			printClusterBench(c.OutOrStdout(), o, res)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.databaseURL, "database-url", env("S3T_DATABASE_URL"), "PostgreSQL server URL (S3T_DATABASE_URL; required)")
	hideDefaults(f, "database-url")
	f.StringVar(&o.blobURL, "blob-url", "", "bucket URL shared by the processes (default: file:// in a temporary directory)")
	f.IntVar(&o.shards, "shards", 4, "m")
	f.IntVar(&o.slices, "slices", 2, "L")
	f.IntVar(&o.samples, "samples", 6000, "MNIST training samples")
	f.IntVar(&o.epoch, "epochs", 2, "epochs per stage")
	f.IntVar(&o.deletions, "deletions", 300, "samples deleted in the deletion measurement")
	f.IntVar(&o.clients, "clients", 4, "concurrent deleting clients (half on each replica)")
	f.IntVar(&o.runs, "runs", 3, "repetitions of the training measurement (medians are reported)")
	f.BoolVar(&o.pin, "pin", true, "pin each worker to its own core with taskset, where available")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func printClusterBench(w io.Writer, o clusterBenchOptions, r *clusterBenchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "measurement\tvalue\tnotes\n")
	fmt.Fprintf(tw, "train, 1 worker\t%.2f s\tmedian of %d: %v\n", median(r.Train1), r.Runs, fmtSecs(r.Train1))
	fmt.Fprintf(tw, "train, 2 workers\t%.2f s\tmedian of %d: %v\n", median(r.Train2), r.Runs, fmtSecs(r.Train2))
	fmt.Fprintf(tw, "speedup\t%.2fx\ttarget >= 1.7x; m=%d L=%d, %d samples, %d epochs; one core per worker (pinned: %v)\n", r.Speedup, o.shards, o.slices, o.samples, o.epoch, r.Pinned)
	fmt.Fprintf(tw, "deletions\t%.0f /s\t%d deletions, %d clients over 2 replicas\n", r.DeletePerS, r.Deletions, o.clients)
	fmt.Fprintf(tw, "delete p50\t%.2f ms\t\n", r.DeleteP50Ms)
	fmt.Fprintf(tw, "delete p99\t%.2f ms\ttarget < 25 ms\n", r.DeleteP99Ms)
	tw.Flush()
}

func fmtSecs(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// benchProc is one child process of the bench (the s3t executable).
type benchProc struct {
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clusterRun is one cluster: a fresh schema, a bucket, and its processes.
type clusterRun struct {
	o      clusterBenchOptions
	exe    string
	tmp    string
	dsn    string
	blob   string
	procs  []*benchProc
	drop   func()
	cpus   []int
	pinned bool
}

func (r *clusterRun) start(pin int, args ...string) (*benchProc, error) {
	name := r.exe
	if pin >= 0 && r.o.pin {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", fmt.Sprint(r.cpus[pin%len(r.cpus)]), r.exe}, args...)
			name = ts
			r.pinned = true
		}
	}
	p := &benchProc{log: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), "S3T_KEYS=") // the bench's client sends no key
	if pin >= 0 {
		p.cmd.Env = append(p.cmd.Env, "GOMAXPROCS=1")
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	r.procs = append(r.procs, p)
	return p, nil
}

func (r *clusterRun) serve(name string) (*api.Client, error) {
	data := filepath.Join(r.tmp, name)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	addrFile := filepath.Join(data, "serve.addr")
	p, err := r.start(-1, "serve", "--addr", "127.0.0.1:0", "--addr-file", addrFile, "--data", data, "--database-url", r.dsn, "--blob-url", r.blob, "--train-workers", "0")
	if err != nil {
		return nil, err
	}
	addr, err := waitAddrFile(addrFile, p.done, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w:\n%s", err, p.log)
	}
	cl, err := api.NewClient("http://" + addr)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := cl.Health(context.Background(), &api.HealthRequest{}); err == nil {
			return cl, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("s3t serve exited:\n%s", p.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("s3t serve not up after 30 s:\n%s", p.log)
		}
	}
}

func (r *clusterRun) worker(i int) error {
	p, err := r.start(i, "worker", "--database-url", r.dsn, "--blob-url", r.blob, "--work-dir", filepath.Join(r.tmp, fmt.Sprint("w", i)), "--train-workers", "1")
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.log.String(), "s3t worker"); {
		select {
		case <-p.done:
			return fmt.Errorf("s3t worker exited:\n%s", p.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("s3t worker not up after 30 s:\n%s", p.log)
		}
	}
	return nil
}

func (r *clusterRun) close() {
	for _, p := range r.procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range r.procs {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	if r.drop != nil {
		r.drop()
	}
	os.RemoveAll(r.tmp)
}

// newClusterRun creates a fresh schema and bucket and migrates them.
func newClusterRun(ctx context.Context, o clusterBenchOptions) (*clusterRun, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "s3t-bench-cluster-")
	if err != nil {
		return nil, err
	}
	r := &clusterRun{o: o, exe: exe, tmp: tmp, cpus: allowedCPUs()}
	db, err := sql.Open("pgx", o.databaseURL)
	if err != nil {
		r.close()
		return nil, err
	}
	schema := fmt.Sprintf("s3t_bench_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		db.Close()
		r.close()
		return nil, fmt.Errorf("bench cluster: %w", err)
	}
	r.drop = func() {
		db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		db.Close()
	}
	sep := "?"
	if strings.Contains(o.databaseURL, "?") {
		sep = "&"
	}
	r.dsn = o.databaseURL + sep + "search_path=" + schema
	r.blob = o.blobURL
	if r.blob == "" {
		if r.blob, err = store.DefaultBlobURL(tmp); err != nil {
			r.close()
			return nil, err
		}
	}
	st, err := store.Open(ctx, r.dsn)
	if err == nil {
		err = st.Migrate(ctx)
		st.Close()
	}
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// benchModel registers the ViT, creates the model and uploads the samples.
func benchModel(ctx context.Context, cl *api.Client, o clusterBenchOptions, data *trainData) ([]string, error) {
	if _, err := cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		return nil, err
	}
	labels := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	spec := api.ModelSpec{Backbone: "vit", Labels: labels, PEFT: api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank": 2}`)},
		S3T:      api.S3TConfig{Shards: o.shards, Slices: o.slices, Sequences: 1},
		Training: api.TrainingConfig{Epochs: o.epoch, LearningRate: 1e-2, BatchSize: 16}, Retrain: api.RetrainPolicy{Disabled: true}}
	if _, err := cl.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		return nil, err
	}
	var ids []string
	var smps []api.Sample
	for _, e := range data.train {
		in, _ := json.Marshal(e.Input)
		smps = append(smps, api.Sample{ID: e.ID, Input: in, Label: labels[e.Label]})
		ids = append(ids, e.ID)
	}
	if _, err := cl.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "m", Samples: smps}); err != nil {
		return nil, err
	}
	return ids, nil
}

// trainOnce trains the model on a fresh cluster with n workers and returns the wall time;
// with deletions, it then measures deletions through two replicas.
func trainOnce(ctx context.Context, log io.Writer, o clusterBenchOptions, data *trainData, workers int, res *clusterBenchResult, deletions bool) (time.Duration, error) {
	r, err := newClusterRun(ctx, o)
	if err != nil {
		return 0, err
	}
	defer r.close()
	a, err := r.serve("a")
	if err != nil {
		return 0, err
	}
	for i := range workers {
		if err := r.worker(i); err != nil {
			return 0, err
		}
	}
	ids, err := benchModel(ctx, a, o, data)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := a.StartTraining(ctx, &api.StartTrainingRequest{Model: "m"}); err != nil {
		return 0, err
	}
	// Poll (the SSE watch reports once a second: too coarse for the wall time).
	var st *api.TrainingStatus
	for {
		if st, err = a.GetTraining(ctx, &api.GetTrainingRequest{Model: "m"}); err != nil {
			return 0, err
		}
		if st.Done {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	took := time.Since(start)
	for _, j := range st.Jobs {
		if j.State != api.TrainingDone {
			return 0, fmt.Errorf("bench cluster: job %+v did not finish", j)
		}
	}
	res.Pinned = res.Pinned || r.pinned
	fmt.Fprintf(log, "bench cluster: %d worker(s): trained in %.2f s\n", workers, took.Seconds())
	if !deletions {
		return took, nil
	}
	b, err := r.serve("b")
	if err != nil {
		return 0, err
	}
	n := min(o.deletions, len(ids))
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan string)
	dstart := time.Now()
	for c := range o.clients {
		cl := a
		if c%2 == 1 {
			cl = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				t0 := time.Now()
				_, err := cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "m", ID: id})
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids[:n] {
		next <- id
	}
	close(next)
	wg.Wait()
	wall := time.Since(dstart)
	if firstErr != nil {
		return 0, fmt.Errorf("bench cluster: delete: %w", firstErr)
	}
	res.Deletions = n
	res.DeletePerS = float64(n) / wall.Seconds()
	slices.Sort(lat)
	res.DeleteP50Ms = float64(percentile(lat, 50).Microseconds()) / 1000
	res.DeleteP99Ms = float64(percentile(lat, 99).Microseconds()) / 1000
	return took, nil
}

func runClusterBench(ctx context.Context, log io.Writer, o clusterBenchOptions) (*clusterBenchResult, error) {
	data, err := loadTrainData("mnist", 0, o.samples)
	if err != nil {
		return nil, fmt.Errorf("bench cluster: MNIST (make deps): %w", err)
	}
	res := &clusterBenchResult{Runs: o.runs}
	for i := range o.runs {
		// Alternate the order so that a warming machine favours neither.
		order := []int{1, 2}
		if i%2 == 1 {
			order = []int{2, 1}
		}
		for _, w := range order {
			took, err := trainOnce(ctx, log, o, data, w, res, w == 2 && i == 0)
			if err != nil {
				return nil, err
			}
			if w == 1 {
				res.Train1 = append(res.Train1, took.Seconds())
			} else {
				res.Train2 = append(res.Train2, took.Seconds())
			}
		}
	}
	res.Speedup = median(res.Train1) / median(res.Train2)
	return res, nil
}

// allowedCPUs returns the CPUs this process may run on (its affinity set).
func allowedCPUs() []int {
	var set unix.CPUSet
	var out []int
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for c := range 1024 {
			if set.IsSet(c) {
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		for c := range runtime.NumCPU() {
			out = append(out, c)
		}
	}
	return out
}
