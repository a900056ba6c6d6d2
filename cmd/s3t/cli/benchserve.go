package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/internal/warmpool"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// serveBenchOptions are the flags of s3t bench serve.
type serveBenchOptions struct {
	data                      string
	keep                      bool
	train, test               int
	shards, slices, sequences int
	epochs, batch             int
	lr                        float64
	clients, batches          string
	requests, warmup, reps    int
	deletions                 int
	restart                   bool
	serverCPUs                string
	trace                     string
	asJSON                    bool
}

// latencyStats summarises one measurement (or the medians of several).
type latencyStats struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// PerSecond is predictions (inputs) per second, or deletions per second, over the wall time.
	PerSecond float64 `json:"per_second"`
	Requests  int     `json:"requests"`
}

// servePredictRow compares predictions over HTTP with the same ensemble run directly.
type servePredictRow struct {
	Clients int          `json:"clients"`
	Batch   int          `json:"batch"`
	HTTP    latencyStats `json:"http"`
	Direct  latencyStats `json:"direct"`
	// ServerMs is the server's own mean time per predict request (its request duration
	// histogram on /metrics: handler, decoding and encoding included, the network and the
	// client not), median over repetitions.
	ServerMs float64 `json:"server_mean_ms"`
	// RatioP50 and RatioP99 are HTTP / Direct latency (medians over repetitions).
	RatioP50 float64 `json:"ratio_p50"`
	RatioP99 float64 `json:"ratio_p99"`
	// V2Binary is the same over the KServe v2 route with the binary tensor data extension
	// (POST /v2/models/NAME/infer, FP32 input bytes, binary probabilities; api.InferV2Binary),
	// with its server mean time and its ratios to Direct.
	V2Binary         latencyStats `json:"v2_binary"`
	V2BinaryServerMs float64      `json:"v2_binary_server_mean_ms"`
	V2BinaryRatioP50 float64      `json:"v2_binary_ratio_p50"`
	V2BinaryRatioP99 float64      `json:"v2_binary_ratio_p99"`
	// Minimal is the native JSON route again, through a minimal keep-alive HTTP/1.1 client
	// (minimalClient: write the request, read the response to the end, decode nothing) instead
	// of api.Client, with its server mean time and its ratios to Direct: what the server costs
	// apart from the Go client's own work.
	Minimal         latencyStats `json:"http_minimal_client"`
	MinimalServerMs float64      `json:"http_minimal_client_server_mean_ms"`
	MinimalRatioP50 float64      `json:"http_minimal_client_ratio_p50"`
	MinimalRatioP99 float64      `json:"http_minimal_client_ratio_p99"`
	// DirectPaced is the direct ensemble again, each run (alone timed) right after a round
	// trip to the server's GET /healthz, as a process that gets its inputs from the network
	// runs it: between runs its threads park and its cores idle, as the server's do between a
	// client's requests, where Direct's callers run back to back on cores that never idle.
	// PacedRatioP50 and PacedRatioP99 are HTTP / DirectPaced. It is measured only while there
	// are two cores or more per client (pacedFits): with fewer, the clients' direct runs
	// contend for the cores, and pacing would lighten that load (their round trips taking
	// turns with the runs) rather than let cores idle. Its throughput's wall time includes the
	// round trips, so it is not comparable with the other throughputs.
	DirectPaced   *latencyStats `json:"direct_paced,omitempty"`
	PacedRatioP50 float64       `json:"paced_ratio_p50,omitempty"`
	PacedRatioP99 float64       `json:"paced_ratio_p99,omitempty"`
}

// servedTraced is what s3t bench serve --trace measured while tracing: its traces' directory,
// and the latencies of one client's single inputs over HTTP and direct beside the tracer.
type servedTraced struct {
	Dir    string       `json:"dir"`
	HTTP   latencyStats `json:"http"`
	Direct latencyStats `json:"direct"`
}

// serveRSS is the server process's memory (/proc/PID/status) at points of the run.
type serveRSS struct {
	// AfterTraining is VmRSS of the process that trained (0 when not restarted: see Idle).
	AfterTraining int64 `json:"after_training_bytes"`
	// Idle is VmRSS of the serving process before any prediction (checkpoints not loaded).
	Idle int64 `json:"idle_bytes"`
	// FirstPredict is VmRSS after the first prediction (backbone, predictors and served
	// checkpoints loaded lazily).
	FirstPredict int64 `json:"after_first_predict_bytes"`
	// AfterPredict is VmRSS after every predict measurement; Peak is VmHWM then.
	AfterPredict int64 `json:"after_predict_bytes"`
	Peak         int64 `json:"peak_bytes"`
}

// serveBenchResult is what `s3t bench serve --json` prints.
type serveBenchResult struct {
	Model        string  `json:"model"`
	Shards       int     `json:"shards"`
	Slices       int     `json:"slices"`
	Sequences    int     `json:"sequences"`
	TrainSamples int     `json:"train_samples"`
	TrainSeconds float64 `json:"train_seconds"`
	Reps         int     `json:"reps"`
	GOMAXPROCS   int     `json:"gomaxprocs"`
	// ServerCPUs is --server-cpus: the CPUs the server was held to (empty: not held).
	ServerCPUs   string            `json:"server_cpus,omitempty"`
	Predict      []servePredictRow `json:"predict"`
	Deletion     latencyStats      `json:"deletion"`
	DeletionCuts int               `json:"deletions_that_cut_a_prefix"`
	// Overheads of the HTTP path, for reading the ratio: HTTPFloor is GET /healthz (p50, one
	// client); ParseMs is the server's decoding of one single-input predict body (one pass over
	// the body, training.ScanInput, as the predict route parses the common shape), timed in this
	// process.
	HTTPFloor latencyStats `json:"http_floor"`
	ParseMs   float64      `json:"parse_one_input_ms"`
	// Traced is what --trace measured while it traced (one client, single inputs), when given.
	Traced        *servedTraced `json:"traced,omitempty"`
	RSS           serveRSS      `json:"server_rss"`
	AgreeMaxDelta float64       `json:"direct_vs_http_max_prob_delta"`
}

func newBenchServeCmd() *cobra.Command {
	var o serveBenchOptions
	c := &cobra.Command{
		Use:   "serve",
		Short: "Predict and deletion latency of a real s3t serve process, against the same ensemble run directly",
		Long: `Start ` + "`s3t serve`" + ` (this binary) on a fresh data directory, register the committed ViT,
create a LoRA S3T model on MNIST (m/L/B from the flags), upload --train digits and train it
through the API. Then, over --reps repetitions, report:

  - predict latency p50/p99 and throughput (predictions/s) with each --clients count of
    concurrent clients and each --batch size, over HTTP (POST /v1/models/NAME/predict, JSON),
    and over the KServe v2 route with the binary tensor data extension (POST
    /v2/models/NAME/infer, the inputs as FP32 bytes, probabilities back as bytes);
  - the same ensemble run directly in this process: the served checkpoints read from the
    server's blob bucket, one adapters.Predictor per core (1 ONNX Runtime thread each, as the
    server's pool) for every shard, then unlearning.Aggregate; HTTP / direct is the ratio;
  - while there are two cores or more per client (one client on 2 cores, up to 8 on 16), the
    direct runs again, paced: each run (alone timed) right after a GET /healthz round trip,
    so that its cores idle between runs as the server's do between a client's requests;
    HTTP / paced is reported in a table of its own;
  - deletion latency p50/p99, request to receipt (DELETE /v1/models/NAME/samples/ID), of
    samples spread round-robin over the (shard, slice) units;
  - the server's resident memory (VmRSS) before and after its first prediction.

Figures are medians over the repetitions. By default the server is restarted after training
without training workers, so that its memory is that of a serving process.`,
		Example: `  s3t bench serve
  s3t bench serve --train 2000 --epochs 2 --reps 5 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			clients, err := parseInts(o.clients)
			if err != nil {
				return fmt.Errorf("%w: --clients: %w", errUsage, err)
			}
			batches, err := parseInts(o.batches)
			if err != nil {
				return fmt.Errorf("%w: --batch-sizes: %w", errUsage, err)
			}
			if o.train < o.shards*o.slices || o.test < 1 || o.reps < 1 || o.requests < 1 || o.deletions < 0 || o.warmup < 0 {
				return fmt.Errorf("%w: need --train >= shards x slices, positive --test, --reps, --requests", errUsage)
			}
			res, err := runServeBench(c.Context(), c.ErrOrStderr(), o, clients, batches)
			if err != nil {
				return err
			}
			if o.asJSON {
				return json.NewEncoder(c.OutOrStdout()).Encode(res)
			}
			printServeBench(c.OutOrStdout(), res)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.data, "data", "", "data directory of the server (default: a temporary one, removed at the end)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary data directory")
	f.IntVar(&o.train, "train", 1000, "MNIST digits uploaded and trained on")
	f.IntVar(&o.test, "test", 200, "held-out MNIST digits used as prediction inputs")
	f.IntVar(&o.shards, "shards", 2, "m, shards")
	f.IntVar(&o.slices, "slices", 4, "L, slices per shard")
	f.IntVar(&o.sequences, "sequences", 2, "B, sequences per shard")
	f.IntVar(&o.epochs, "epochs", 1, "epochs per stage")
	f.IntVar(&o.batch, "train-batch", 32, "training batch size")
	f.Float64Var(&o.lr, "lr", 1e-2, "learning rate")
	f.StringVar(&o.clients, "clients", "1,8", "comma-separated concurrent client counts")
	f.StringVar(&o.batches, "batch-sizes", "1,8", "comma-separated inputs per predict request")
	f.IntVar(&o.requests, "requests", 400, "timed requests per measurement (split over the clients)")
	f.IntVar(&o.warmup, "warmup", 8, "untimed requests before each measurement")
	f.IntVar(&o.reps, "reps", 5, "repetitions; the figures are their medians")
	f.IntVar(&o.deletions, "deletions", 40, "timed deletions per repetition")
	f.BoolVar(&o.restart, "restart", true, "restart the server without training workers after training, before measuring")
	f.StringVar(&o.trace, "trace", "", "after the measurements, write Go execution traces of one client sending single inputs for 2 s each to this directory: server.trace (the server's, through its profiler) and direct.trace (this process's direct runs); read them with go tool trace, e.g. go tool trace -pprof=sched DIR/server.trace")
	f.StringVar(&o.serverCPUs, "server-cpus", "", "hold the server to these CPUs (taskset -c list, as 0-7); the benchmark's own clients and direct runs stay where this process runs (hold it with taskset)")
	f.BoolVar(&o.asJSON, "json", false, "print the results as one line of JSON")
	return c
}

// procStatus returns a field of /proc/PID/status given in kB, in bytes (0 when unreadable).
func procStatus(pid int, field string) int64 {
	var kb int64
	fmt.Sscanf(procStatusLine(pid, field), "%d", &kb)
	return kb << 10
}

// procStatusLine returns the value of a field of /proc/PID/status ("" when unreadable).
func procStatusLine(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func runServeBench(ctx context.Context, errw io.Writer, o serveBenchOptions, clients, batches []int) (*serveBenchResult, error) {
	res := &serveBenchResult{Model: "bench-lora", Shards: o.shards, Slices: o.slices, Sequences: o.sequences, Reps: o.reps, GOMAXPROCS: runtime.GOMAXPROCS(0), ServerCPUs: o.serverCPUs}
	logln := func(format string, args ...any) { fmt.Fprintf(errw, format+"\n", args...) }
	if o.data == "" {
		dir, err := os.MkdirTemp("", "s3t-bench-serve-")
		if err != nil {
			return nil, err
		}
		o.data = dir
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return nil, err
	}
	data, err := loadTrainData("mnist", o.test, o.train)
	if err != nil {
		return nil, fmt.Errorf("bench serve: %w (run make deps)", err)
	}
	res.TrainSamples = len(data.train)
	logf, err := os.Create(filepath.Join(o.data, "serve.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// With --trace, the server serves Go's profiler, which gives the server's trace.
	var debugAddr string
	var debugArgs []string
	if o.trace != "" {
		if debugAddr, err = freeLoopbackAddr(); err != nil {
			return nil, err
		}
		debugArgs = []string{"--debug-addr", debugAddr}
	}
	srv, err := startServeChildOn(ctx, o.serverCPUs, o.data, logf, append(debugArgs, "--train-workers", "2")...)
	if err != nil {
		return nil, err
	}
	cl, addr := srv.cl, srv.addr
	defer func() {
		if srv != nil {
			srv.stop()
		}
	}()
	logln("bench serve: server %s (pid %d), data %s", addr, srv.cmd.Process.Pid, o.data)

	// The demo setup: the committed ViT, a LoRA S3T model on MNIST, trained through the API.
	spec := demoSpec(o.shards, o.slices, o.sequences, o.epochs, o.batch, o.lr)
	name := res.Model
	logln("bench serve: training m=%d, L=%d, B=%d on %d digits, %d epoch(s) per stage", o.shards, o.slices, o.sequences, len(data.train), o.epochs)
	trainStart := time.Now()
	if err := trainDemoModel(ctx, cl, errw, name, spec, data); err != nil {
		return nil, fmt.Errorf("bench serve: %w", err)
	}
	res.TrainSeconds = time.Since(trainStart).Seconds()

	if o.restart {
		res.RSS.AfterTraining = procStatus(srv.cmd.Process.Pid, "VmRSS")
		err := srv.stop()
		srv = nil
		if err != nil {
			return nil, fmt.Errorf("bench serve: stop after training: %w", err)
		}
		if srv, err = startServeChildOn(ctx, o.serverCPUs, o.data, logf, append(debugArgs, "--train-workers", "0")...); err != nil {
			return nil, err
		}
		cl, addr = srv.cl, srv.addr
		logln("bench serve: restarted without training workers (pid %d)", srv.cmd.Process.Pid)
	}
	pid := srv.cmd.Process.Pid
	res.RSS.Idle = procStatus(pid, "VmRSS")

	// Inputs: the held-out digits, as JSON for HTTP and as float32 for the direct path.
	row := len(data.testX) / len(data.testY)
	raw := make([]json.RawMessage, len(data.testY))
	vals := make([][]float32, len(data.testY))
	for i := range raw {
		vals[i] = data.testX[i*row : (i+1)*row]
		raw[i], _ = json.Marshal(vals[i])
	}
	agree := min(8, len(raw)) // digits the served, direct and v2 answers are compared on
	first, err := cl.Predict(ctx, &api.PredictRequest{Name: name, Inputs: raw[:agree]})
	if err != nil {
		return nil, err
	}
	res.RSS.FirstPredict = procStatus(pid, "VmRSS")

	direct, err := newDirectEnsemble(ctx, o.data, name, spec, first.Served)
	if err != nil {
		return nil, err
	}
	defer direct.close()
	// The direct ensemble must give the served answer.
	scores, _, err := direct.predict(ctx, vals[:agree])
	if err != nil {
		return nil, err
	}
	for i, p := range first.Predictions {
		for c, l := range spec.Labels {
			res.AgreeMaxDelta = math.Max(res.AgreeMaxDelta, math.Abs(p.Probabilities[l]-scores[i*len(spec.Labels)+c]))
		}
	}
	// So must the v2 binary route.
	bin, err := cl.InferV2Binary(ctx, name, vals[:agree], direct.rec.InputShape)
	if err != nil {
		return nil, err
	}
	bprobs, err := bin.Output("probabilities").Float32s()
	if err != nil {
		return nil, err
	}
	if len(bprobs) != len(scores) {
		return nil, fmt.Errorf("bench serve: v2 binary: %d probabilities, want %d", len(bprobs), len(scores))
	}
	for i, p := range bprobs {
		res.AgreeMaxDelta = math.Max(res.AgreeMaxDelta, math.Abs(float64(p)-scores[i]))
	}
	if res.AgreeMaxDelta > 1e-3 {
		return nil, fmt.Errorf("bench serve: the direct ensemble differs from the served predictions by %.3g", res.AgreeMaxDelta)
	}

	httpCall := func(batch int) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			in := make([]json.RawMessage, batch)
			for j := range in {
				in[j] = raw[(i*batch+j)%len(raw)]
			}
			_, err := cl.Predict(ctx, &api.PredictRequest{Name: name, Inputs: in})
			return err
		}
	}
	v2BinaryCall := func(batch int) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			in := make([][]float32, batch)
			for j := range in {
				in[j] = vals[(i*batch+j)%len(vals)]
			}
			_, err := cl.InferV2Binary(ctx, name, in, direct.rec.InputShape)
			return err
		}
	}
	mc := newMinimalClient(addr, slices.Max(clients))
	defer mc.close()
	predictPath := "/v1/models/" + url.PathEscape(name) + "/predict"
	minimalCall := func(batch int) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			body := append(make([]byte, 0, batch*(len(raw[0])+1)+16), `{"inputs":[`...)
			for j := range batch {
				if j > 0 {
					body = append(body, ',')
				}
				body = append(body, raw[(i*batch+j)%len(raw)]...)
			}
			return mc.post(ctx, predictPath, "application/json", append(body, "]}"...))
		}
	}
	directCall := func(batch int) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			in := make([][]float32, batch)
			for j := range in {
				in[j] = vals[(i*batch+j)%len(vals)]
			}
			_, _, err := direct.predict(ctx, in)
			return err
		}
	}
	health := func(ctx context.Context) error {
		_, err := cl.Health(ctx, &api.HealthRequest{})
		return err
	}
	if res.HTTPFloor, err = measureConcurrent(ctx, 1, o.warmup, o.requests, 1, nil, func(ctx context.Context, _ int) error {
		return health(ctx)
	}); err != nil {
		return nil, err
	}
	if res.ParseMs, err = parseCost(raw[0], row); err != nil {
		return nil, err
	}
	type key struct{ clients, batch int }
	// Per measured path (native JSON, v2 binary, direct, native JSON through the minimal
	// client, direct paced by round trips): the repetitions' figures, and the server's mean
	// time of each route. They are measured in the order of order: the paced runs after the
	// plain direct ones, so that every other measurement follows what it followed before there
	// were paced runs, and each row still ends with HTTP load (on 2 cores what ran just before
	// moved 8 clients' single inputs between two levels: 1.6 ms at p50 after one client's HTTP
	// requests, 1.8-2.0 ms after paced direct runs).
	routes := []string{predictRoute, inferV2Route, "", predictRoute, ""}
	order := []int{0, 1, 2, 4, 3}
	perRep := map[key][5][]latencyStats{}
	serverMs := map[key][5][]float64{}
	for r := range o.reps {
		for _, b := range batches {
			for _, n := range clients {
				k := key{n, b}
				got, sms := perRep[k], serverMs[k]
				sides := []func(context.Context, int) error{httpCall(b), v2BinaryCall(b), directCall(b), minimalCall(b), directCall(b)}
				for _, side := range order {
					if side == 4 && !pacedFits(n) {
						continue // see servePredictRow.DirectPaced
					}
					call := sides[side]
					var sum0, n0 float64
					if routes[side] != "" {
						if sum0, n0, err = scrapeRouteTime(ctx, addr, routes[side]); err != nil {
							return nil, err
						}
					}
					var before func(context.Context) error
					if side == 4 {
						before = health
					}
					st, err := measureConcurrent(ctx, n, o.warmup, o.requests, b, before, call)
					if err != nil {
						return nil, err
					}
					got[side] = append(got[side], st)
					if routes[side] != "" {
						sum1, n1, err := scrapeRouteTime(ctx, addr, routes[side])
						if err != nil {
							return nil, err
						}
						sms[side] = append(sms[side], 1000*(sum1-sum0)/max(n1-n0, 1))
					}
				}
				perRep[k], serverMs[k] = got, sms
				paced := ""
				if len(got[4]) > r {
					paced = fmt.Sprintf(", direct paced p50 %.2f ms", got[4][r].P50Ms)
				}
				logln("bench serve: rep %d, %d client(s), batch %d: http p50 %.2f ms (server mean %.2f ms), v2 binary p50 %.2f ms (server mean %.2f ms), "+
					"minimal client p50 %.2f ms (server mean %.2f ms), direct p50 %.2f ms%s",
					r+1, n, b, got[0][r].P50Ms, sms[0][r], got[1][r].P50Ms, sms[1][r], got[3][r].P50Ms, sms[3][r], got[2][r].P50Ms, paced)
			}
		}
	}
	for _, b := range batches {
		for _, n := range clients {
			got, sms := perRep[key{n, b}], serverMs[key{n, b}]
			row := servePredictRow{Clients: n, Batch: b, HTTP: medianStats(got[0]), Direct: medianStats(got[2]), ServerMs: median(sms[0]),
				V2Binary: medianStats(got[1]), V2BinaryServerMs: median(sms[1]), Minimal: medianStats(got[3]), MinimalServerMs: median(sms[3])}
			row.RatioP50 = row.HTTP.P50Ms / row.Direct.P50Ms
			row.RatioP99 = row.HTTP.P99Ms / row.Direct.P99Ms
			row.V2BinaryRatioP50 = row.V2Binary.P50Ms / row.Direct.P50Ms
			row.V2BinaryRatioP99 = row.V2Binary.P99Ms / row.Direct.P99Ms
			row.MinimalRatioP50 = row.Minimal.P50Ms / row.Direct.P50Ms
			row.MinimalRatioP99 = row.Minimal.P99Ms / row.Direct.P99Ms
			if len(got[4]) > 0 {
				paced := medianStats(got[4])
				row.DirectPaced = &paced
				row.PacedRatioP50 = row.HTTP.P50Ms / paced.P50Ms
				row.PacedRatioP99 = row.HTTP.P99Ms / paced.P99Ms
			}
			res.Predict = append(res.Predict, row)
		}
	}
	res.RSS.AfterPredict = procStatus(pid, "VmRSS")
	res.RSS.Peak = procStatus(pid, "VmHWM")
	if o.trace != "" {
		h, d, err := serveTraces(ctx, o.trace, debugAddr, httpCall(1), directCall(1))
		if err != nil {
			return nil, fmt.Errorf("bench serve: --trace: %w", err)
		}
		res.Traced = &servedTraced{Dir: o.trace, HTTP: h, Direct: d}
		logln("bench serve: traced one client's single inputs to %s: http p50 %.2f ms (%d requests), direct p50 %.2f ms (%d runs); the tracer slows both",
			o.trace, h.P50Ms, h.Requests, d.P50Ms, d.Requests)
	}

	if o.deletions > 0 {
		ids, err := spreadSamples(ctx, cl, name, data.train)
		if err != nil {
			return nil, err
		}
		var reps []latencyStats
		next := 0
		for r := range o.reps {
			var lat []time.Duration
			start := time.Now()
			for range o.deletions {
				if next == len(ids) {
					break
				}
				t0 := time.Now()
				rc, err := cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: name, ID: ids[next]})
				if err != nil {
					return nil, err
				}
				lat = append(lat, time.Since(t0))
				if len(rc.Truncations) > 0 {
					res.DeletionCuts++
				}
				next++
			}
			if len(lat) == 0 {
				break
			}
			st := summarize(lat, time.Since(start), 1)
			reps = append(reps, st)
			logln("bench serve: rep %d: %d deletions, p50 %.2f ms, p99 %.2f ms", r+1, len(lat), st.P50Ms, st.P99Ms)
		}
		res.Deletion = medianStats(reps)
	}

	err = srv.stop()
	srv = nil
	if err != nil {
		return nil, fmt.Errorf("bench serve: s3t serve: %w (see %s)", err, logf.Name())
	}
	return res, nil
}

// parseCost times what the predict handler does to a one-input body of the common shape,
// {"inputs":[[...]]}, before predicting: one pass over the body's numbers into the values the
// shards read (training.ScanInput; median of 200 runs, in ms).
func parseCost(input json.RawMessage, size int) (float64, error) {
	const head = `{"inputs":[`
	body := append(append([]byte(head), input...), "]}"...)
	d := make([]time.Duration, 200)
	for i := range d {
		t0 := time.Now()
		if _, _, err := training.ScanInput(make([]float32, 0, size), body, len(head), []int64{int64(size)}); err != nil {
			return 0, err
		}
		d[i] = time.Since(t0)
	}
	slices.Sort(d)
	return float64(d[len(d)/2]) / float64(time.Millisecond), nil
}

// spreadSamples orders the samples so that consecutive ones come from different (shard,
// slice) units, round-robin.
func spreadSamples(ctx context.Context, cl *api.Client, model string, train []adapters.Example) ([]string, error) {
	units := map[api.Placement][]string{}
	var order []api.Placement
	for _, e := range train {
		info, err := cl.GetSample(ctx, &api.GetSampleRequest{Model: model, ID: e.ID})
		if err != nil {
			return nil, err
		}
		if _, ok := units[info.Placement]; !ok {
			order = append(order, info.Placement)
		}
		units[info.Placement] = append(units[info.Placement], e.ID)
	}
	slices.SortFunc(order, func(a, b api.Placement) int {
		if a.Slice != b.Slice {
			return a.Slice - b.Slice
		}
		return a.Shard - b.Shard
	})
	var groups [][]string
	for _, p := range order {
		groups = append(groups, units[p])
	}
	return roundRobin(groups), nil
}

// roundRobin interleaves groups: the first of each, then the second of each, and so on.
func roundRobin(groups [][]string) []string {
	var out []string
	for i := 0; ; i++ {
		added := false
		for _, g := range groups {
			if i < len(g) {
				out = append(out, g[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

// pacedFits reports whether the direct runs of clients concurrent clients are also measured
// paced (servePredictRow.DirectPaced): while there are two cores or more per client.
func pacedFits(clients int) bool { return 2*clients <= runtime.GOMAXPROCS(0) }

// measureConcurrent runs warmup untimed calls, then requests timed calls spread over clients
// concurrent goroutines, and summarises their latencies (batch inputs per call). before, when
// not nil, runs untimed before each call; the throughput's wall time includes it.
func measureConcurrent(ctx context.Context, clients, warmup, requests, batch int, before func(context.Context) error,
	call func(ctx context.Context, i int) error) (latencyStats, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	run := func(total int, lat *[]time.Duration) {
		per := (total + clients - 1) / clients
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for i := range per {
					var t0 time.Time
					var err error
					if before != nil {
						err = before(ctx)
					}
					if err == nil {
						t0 = time.Now()
						err = call(ctx, c*per+i)
					}
					if err != nil {
						mu.Lock()
						first = cmp.Or(first, err)
						mu.Unlock()
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				*lat = append(*lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	var discard, lat []time.Duration
	if warmup > 0 {
		run(max(warmup, clients), &discard)
	}
	start := time.Now()
	run(requests, &lat)
	wall := time.Since(start)
	if first != nil {
		return latencyStats{}, first
	}
	return summarize(lat, wall, batch), nil
}

// summarize gives the p50 and p99 of lat and the throughput of n items per call over wall.
func summarize(lat []time.Duration, wall time.Duration, n int) latencyStats {
	if len(lat) == 0 {
		return latencyStats{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencyStats{P50Ms: ms(percentile(s, 50)), P99Ms: ms(percentile(s, 99)), Requests: len(s),
		PerSecond: float64(len(s)*n) / wall.Seconds()}
}

// percentile returns the p-th percentile of sorted s (nearest rank).
func percentile(s []time.Duration, p int) time.Duration {
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// predictRoute and inferV2Route are the native predict route's and the v2 inference route's
// labels in the server's metrics.
const (
	predictRoute = `route="/v1/models/:name/predict"`
	inferV2Route = `route="/v2/models/:name/infer"`
)

// scrapeRouteTime reads the server's request duration histogram of route (a metrics label,
// predictRoute or inferV2Route) from /metrics: the sum of the durations (seconds) and their
// count.
func scrapeRouteTime(ctx context.Context, addr, route string) (sum, count float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	sum, count = parseRouteTime(string(b), route)
	return sum, count, nil
}

// parsePredictTime finds the predict route's duration sum and count in a text exposition.
func parsePredictTime(text string) (sum, count float64) { return parseRouteTime(text, predictRoute) }

// parseRouteTime finds route's duration sum and count in a text exposition.
func parseRouteTime(text, route string) (sum, count float64) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, route) {
			continue
		}
		var dst *float64
		switch {
		case strings.HasPrefix(line, "s3t_http_request_duration_seconds_sum{"):
			dst = &sum
		case strings.HasPrefix(line, "s3t_http_request_duration_seconds_count{"):
			dst = &count
		default:
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			fmt.Sscanf(line[i+1:], "%g", dst)
		}
	}
	return sum, count
}

// medianStats is the element-wise median of several measurements.
func medianStats(reps []latencyStats) latencyStats {
	if len(reps) == 0 {
		return latencyStats{}
	}
	med := func(f func(latencyStats) float64) float64 {
		v := make([]float64, len(reps))
		for i, r := range reps {
			v[i] = f(r)
		}
		return median(v)
	}
	out := latencyStats{
		P50Ms:     med(func(r latencyStats) float64 { return r.P50Ms }),
		P99Ms:     med(func(r latencyStats) float64 { return r.P99Ms }),
		PerSecond: med(func(r latencyStats) float64 { return r.PerSecond }),
	}
	for _, r := range reps {
		out.Requests += r.Requests
	}
	return out
}

// directEnsemble is what the server does for a prediction, minus HTTP and the ledger check:
// the served checkpoints, a pool of one Predictor per core (1 ONNX Runtime thread each when
// there are several, as serving.New's defaults), every shard's logits and their aggregate.
type directEnsemble struct {
	rec *training.Record
	cks []*adapters.Checkpoint
	// The Predictors are pooled as the server pools its own (warmpool): the one whose sessions
	// last ran on the caller's CPU, warm in its caches, is taken first. A FIFO queue handed one
	// client each of the GOMAXPROCS Predictors in turn, a colder session every time on a
	// many-core host: a weaker baseline than the server's pool.
	sem  chan struct{} // a token per Predictor in use
	idle warmpool.Pool[*adapters.Predictor]
	all  []*adapters.Predictor
}

// newDirectEnsemble reads the served checkpoints from the server's blob bucket (file:// under
// data, read only), at the keys its ledger records (SQLite in data, read only), and derives the
// model's record from its spec, as the server did.
func newDirectEnsemble(ctx context.Context, data, model string, spec api.ModelSpec, served []api.ShardServed) (*directEnsemble, error) {
	onnx := assets.ViTFashionMNIST()
	rec, err := training.NewRecord(ctx, spec, onnx, nil)
	if err != nil {
		return nil, err
	}
	burl, err := store.DefaultBlobURL(data)
	if err != nil {
		return nil, err
	}
	blobs, err := store.OpenBlobs(ctx, burl)
	if err != nil {
		return nil, err
	}
	defer blobs.Close()
	ledger, err := store.Open(ctx, store.SQLiteDSN(data))
	if err != nil {
		return nil, err
	}
	defer ledger.Close()
	d := &directEnsemble{rec: rec, cks: make([]*adapters.Checkpoint, len(served))}
	for _, s := range served {
		if s.Length == 0 {
			continue
		}
		ck, err := ledger.CheckpointRecordOf(ctx, model, s.Shard, s.Sequence, s.Gen, s.Length)
		if err != nil {
			return nil, fmt.Errorf("bench serve: served checkpoint of shard %d: %w", s.Shard, err)
		}
		b, err := blobs.Get(ctx, ck.BlobKey)
		if err != nil {
			return nil, fmt.Errorf("bench serve: served checkpoint of shard %d: %w", s.Shard, err)
		}
		if d.cks[s.Shard], err = adapters.DecodeCheckpoint(b); err != nil {
			return nil, err
		}
	}
	bm, err := backbone.LoadBytes(onnx)
	if err != nil {
		return nil, err
	}
	man, err := backbone.DetectManifest(bm)
	if err != nil {
		return nil, err
	}
	n := runtime.GOMAXPROCS(0)
	threads := 0
	if n > 1 {
		threads = 1
	}
	d.sem = make(chan struct{}, n)
	peft := adapters.Planned{Plugin: rec.PEFT.Type, Plan: rec.Plan}
	for range n {
		p, err := adapters.NewPredictor(bm, man, peft, spec.S3T.Slices, rec.HeadInput, threads)
		if err != nil {
			d.close()
			return nil, err
		}
		d.all = append(d.all, p)
		d.idle.Put(p)
	}
	return d, nil
}

func (d *directEnsemble) predict(ctx context.Context, inputs [][]float32) ([]float64, []int, error) {
	d.sem <- struct{}{}
	p, _ := d.idle.Get() // a token of sem leaves one idle
	defer func() {
		d.idle.Put(p)
		<-d.sem
	}()
	if trace.IsEnabled() { // --trace: each prediction a task, as the server's requests are
		var task *trace.Task
		ctx, task = trace.NewTask(ctx, "direct")
		defer task.End()
	}
	probs, labels, err := training.Ensemble(ctx, p, d.cks, d.rec, inputs)
	d.idle.Ran(p)
	return probs, labels, err
}

func (d *directEnsemble) close() {
	for _, p := range d.all {
		p.Close()
	}
}

func printServeBench(w io.Writer, r *serveBenchResult) {
	fmt.Fprintf(w, "s3t bench serve: LoRA S3T on MNIST, m=%d L=%d B=%d, %d training digits (trained in %.0f s); GOMAXPROCS %d; medians of %d repetitions\n",
		r.Shards, r.Slices, r.Sequences, r.TrainSamples, r.TrainSeconds, r.GOMAXPROCS, r.Reps)
	if r.ServerCPUs != "" {
		fmt.Fprintf(w, "the server held to CPUs %s\n", r.ServerCPUs)
	}
	fmt.Fprintln(w, "\npredict: HTTP (POST /v1/models/NAME/predict, JSON) and v2 binary (POST /v2/models/NAME/infer, binary tensor data) vs the same ensemble directly through ONNX Runtime")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tbatch\tHTTP p50 ms\tHTTP p99 ms\tHTTP pred/s\tserver mean ms\tdirect p50 ms\tdirect p99 ms\tdirect pred/s\tp50 ratio\tp99 ratio\t"+
		"v2 bin p50 ms\tv2 bin p99 ms\tv2 bin pred/s\tv2 bin server ms\tv2 bin p50 ratio\tv2 bin p99 ratio\t")
	for _, p := range r.Predict {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%.3fx\t%.3fx\t%.2f\t%.2f\t%.0f\t%.2f\t%.3fx\t%.3fx\t\n", p.Clients, p.Batch,
			p.HTTP.P50Ms, p.HTTP.P99Ms, p.HTTP.PerSecond, p.ServerMs, p.Direct.P50Ms, p.Direct.P99Ms, p.Direct.PerSecond, p.RatioP50, p.RatioP99,
			p.V2Binary.P50Ms, p.V2Binary.P99Ms, p.V2Binary.PerSecond, p.V2BinaryServerMs, p.V2BinaryRatioP50, p.V2BinaryRatioP99)
	}
	tw.Flush()
	fmt.Fprintf(w, "(direct, HTTP and v2 binary probabilities agree within %.2g; target: p50 ratio <= 1.2x)\n", r.AgreeMaxDelta)
	fmt.Fprintln(w, "\nthe same JSON route through a minimal keep-alive HTTP/1.1 client (writes the request, reads the response to the end, decodes nothing), not api.Client:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tbatch\tp50 ms\tp99 ms\tpred/s\tserver mean ms\tp50 ratio\tp99 ratio\t")
	for _, p := range r.Predict {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.2f\t%.0f\t%.2f\t%.3fx\t%.3fx\t\n", p.Clients, p.Batch,
			p.Minimal.P50Ms, p.Minimal.P99Ms, p.Minimal.PerSecond, p.MinimalServerMs, p.MinimalRatioP50, p.MinimalRatioP99)
	}
	tw.Flush()
	if slices.ContainsFunc(r.Predict, func(p servePredictRow) bool { return p.DirectPaced != nil }) {
		fmt.Fprintln(w, "\nagainst the direct ensemble paced (while there are 2 cores or more per client): each run (alone timed) right after a GET /healthz round trip, so that its threads park and its cores idle between runs, as the server's do between a client's requests:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "clients\tbatch\tpaced p50 ms\tpaced p99 ms\tHTTP / paced p50\tHTTP / paced p99\t")
		for _, p := range r.Predict {
			if p.DirectPaced != nil {
				fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.2f\t%.3fx\t%.3fx\t\n", p.Clients, p.Batch,
					p.DirectPaced.P50Ms, p.DirectPaced.P99Ms, p.PacedRatioP50, p.PacedRatioP99)
			}
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "HTTP floor (GET /healthz, 1 client): p50 %.2f ms, p99 %.2f ms; decoding one input's predict body (one pass, training.ScanInput): %.3f ms\n",
		r.HTTPFloor.P50Ms, r.HTTPFloor.P99Ms, r.ParseMs)
	if t := r.Traced; t != nil {
		fmt.Fprintf(w, "traced (--trace %s: server.trace, direct.trace), 1 client, single inputs, slowed by the tracer: HTTP p50 %.2f ms (%d requests), direct p50 %.2f ms (%d runs)\n",
			t.Dir, t.HTTP.P50Ms, t.HTTP.Requests, t.Direct.P50Ms, t.Direct.Requests)
	}
	if r.Deletion.Requests > 0 {
		fmt.Fprintf(w, "\ndeletion, request to receipt over HTTP: p50 %.2f ms, p99 %.2f ms, %.0f deletions/s (%d deletions, %d cut a prefix; target: p99 < 10 ms)\n",
			r.Deletion.P50Ms, r.Deletion.P99Ms, r.Deletion.PerSecond, r.Deletion.Requests, r.DeletionCuts)
	}
	fmt.Fprintln(w, "\nserver memory (VmRSS of the s3t serve process):")
	if r.RSS.AfterTraining > 0 {
		fmt.Fprintf(w, "  after training (training process)  %s\n", humanBytes(r.RSS.AfterTraining))
	}
	fmt.Fprintf(w, "  idle, before any prediction        %s\n", humanBytes(r.RSS.Idle))
	fmt.Fprintf(w, "  after the first prediction         %s\n", humanBytes(r.RSS.FirstPredict))
	fmt.Fprintf(w, "  after the predict benchmarks       %s (peak VmHWM %s)\n", humanBytes(r.RSS.AfterPredict), humanBytes(r.RSS.Peak))
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "\njson: %s\n", b)
}
