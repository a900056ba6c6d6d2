package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/dataset"
)

// demoOptions are the flags of s3t demo.
type demoOptions struct {
	data, addr                string
	keep                      bool
	train, test               int
	shards, slices, sequences int
	epochs, batch             int
	lr                        float64
	deletions                 int
	workers                   int
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the main job on the embedded defaults: serve, train LoRA S3T on MNIST, predict, delete",
		Long: `The whole story on real data, through the HTTP API of a real server: starts ` + "`s3t serve`" + ` (SQLite
and blobs in a data directory, an in-process training worker), registers the committed ViT
backbone, creates a LoRA S3T model on MNIST, uploads the training digits, trains with a progress
bar (one job per shard x sequence, stages top-down), predicts the held-out digits, then deletes
samples from shard 0 one by one, each from the last slice of the prefix it serves, and shows
the receipts, the new served prefixes and the accuracy after each deletion, and stops the server.

The defaults finish in under a minute on 2 cores. ` + "`s3t demo rates`" + ` prints the simulated deletion-rate study.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.test < 1 || o.train < 1 || o.deletions < 0 {
				return fmt.Errorf("%w: need positive --test and --train, and --deletions >= 0", errUsage)
			}
			return runDemo(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.data, "data", "", "data directory of the demo server (default: a temporary one, removed at the end)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary data directory")
	f.StringVar(&o.addr, "addr", "", "listen address of the demo server (default: a free loopback port)")
	f.IntVar(&o.train, "train", 8000, "MNIST digits uploaded for training")
	f.IntVar(&o.test, "test", 1000, "held-out MNIST digits predicted")
	f.IntVar(&o.shards, "shards", 2, "m, shards")
	f.IntVar(&o.slices, "slices", 4, "L, slices per shard (and stages)")
	f.IntVar(&o.sequences, "sequences", 2, "B, sequences per shard")
	f.IntVar(&o.epochs, "epochs", 3, "epochs per stage")
	f.IntVar(&o.batch, "batch", 32, "batch size")
	f.Float64Var(&o.lr, "lr", 1e-2, "learning rate")
	f.IntVar(&o.deletions, "deletions", 3, "samples deleted from shard 0, one at a time")
	f.IntVar(&o.workers, "train-workers", 2, "training jobs the demo server runs at once")
	c.AddCommand(newDemoRatesCmd())
	return c
}

// runDemo runs the demo against a server process it starts and stops.
func runDemo(ctx context.Context, out, errw io.Writer, o demoOptions) error {
	start := time.Now()
	if o.data == "" {
		dir, err := os.MkdirTemp("", "s3t-demo-")
		if err != nil {
			return err
		}
		o.data = dir
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	data, err := loadTrainData("mnist", o.test, o.train)
	if err != nil {
		return fmt.Errorf("demo: %w (run make deps)", err)
	}
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(o.data, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	srv, err := startServeChild(ctx, o.data, logf, "--addr", o.addr, "--train-workers", fmt.Sprint(o.workers))
	if err != nil {
		return fmt.Errorf("demo: %w (see %s)", err, logPath)
	}
	cl := srv.cl
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()
	fmt.Fprintf(out, "s3t demo: server %s (pid %d), data %s, log %s\n", srv.addr, srv.cmd.Process.Pid, o.data, logPath)

	step := func(format string, args ...any) { fmt.Fprintf(out, "\n== "+format+"\n", args...) }
	step("register the committed ViT; create a LoRA S3T model: m=%d shards, L=%d slices, B=%d sequences (cyclic); upload %d MNIST digits as NDJSON; train",
		o.shards, o.slices, o.sequences, len(data.train))
	const name = "mnist-lora"
	trainStart := time.Now()
	if err := trainDemoModel(ctx, cl, errw, name, demoSpec(o.shards, o.slices, o.sequences, o.epochs, o.batch, o.lr), data); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	m, err := cl.GetModel(ctx, &api.GetModelRequest{Name: name})
	if err != nil {
		return err
	}
	if bb, err := cl.GetBackbone(ctx, &api.GetBackboneRequest{Name: "vit"}); err == nil {
		fmt.Fprintf(out, "backbone vit: %d bytes, sha256 %.12s..., ONNX Runtime provider %s\n", bb.Size, bb.SHA256, runtimeName(bb.Runtime))
	}
	for k, seqs := range m.Sequences {
		fmt.Fprintf(out, "shard %d sequences: %v\n", k, seqs)
	}
	fmt.Fprintf(out, "%d samples on %d x %d (shard, slice) units; %d training jobs (shard x sequence), %d stages each, trained in %s\n",
		m.Samples, o.shards, o.slices, o.shards*o.sequences, o.slices, time.Since(trainStart).Round(time.Second))

	acc := func() (float64, []api.ShardServed, error) {
		correct, n := 0, len(data.testY)
		var served []api.ShardServed
		row := len(data.testX) / n
		for lo := 0; lo < n; lo += 250 {
			hi := min(lo+250, n)
			req := &api.PredictRequest{Name: name}
			for i := lo; i < hi; i++ {
				in, _ := json.Marshal(data.testX[i*row : (i+1)*row])
				req.Inputs = append(req.Inputs, in)
			}
			res, err := cl.Predict(ctx, req)
			if err != nil {
				return 0, nil, err
			}
			for i, p := range res.Predictions {
				if p.Index == data.testY[lo+i] {
					correct++
				}
			}
			served = res.Served
		}
		return float64(correct) / float64(n), served, nil
	}
	step("predict %d held-out digits (aggregated over the shards' served checkpoints)", len(data.testY))
	a, served, err := acc()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "accuracy %.4f, served %s\n", a, servedString(served))

	step("delete samples of shard 0, each from the last slice of the prefix it serves")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tsample\t(shard, slice)\ttruncations\tshard 0 serves\treceipt\tlatency\taccuracy")
	fmt.Fprintf(tw, "0\t-\t-\t-\t%s\t-\t-\t%.4f\n", servedOf(served, 0), a)
	for i := 1; i <= o.deletions; i++ {
		m, err := cl.GetModel(ctx, &api.GetModelRequest{Name: name})
		if err != nil {
			return err
		}
		sv := m.Serving[0]
		if sv.Length == 0 {
			break
		}
		slice := m.Sequences[0][sv.Sequence][sv.Length-1]
		id := ""
		for _, e := range data.train {
			info, err := cl.GetSample(ctx, &api.GetSampleRequest{Model: name, ID: e.ID})
			if err == nil && info.Placement.Shard == 0 && info.Placement.Slice == slice {
				id = e.ID
				break
			}
		}
		if id == "" {
			break
		}
		t0 := time.Now()
		rc, err := cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: name, ID: id})
		if err != nil {
			return err
		}
		lat := time.Since(t0)
		var cuts []string
		for _, t := range rc.Truncations {
			cuts = append(cuts, fmt.Sprintf("seq %d: %d->%d", t.Sequence, t.From, t.To))
		}
		a, served, err = acc()
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%d\t%s\t(%d, %d)\t%s\t%s\t%.8s v%d\t%s\t%.4f\n", i, id, rc.Shard, rc.Slice, strings.Join(cuts, ", "),
			servedOf(served, 0), rc.ID, rc.LedgerVersion, lat.Round(10*time.Microsecond), a)
	}
	tw.Flush()

	step("unlearning status")
	us, err := cl.GetUnlearning(ctx, &api.GetUnlearningRequest{Model: name})
	if err != nil {
		return err
	}
	for _, sh := range us.Shards {
		var live []string
		for _, sq := range sh.Sequences {
			live = append(live, fmt.Sprintf("seq %d %v live %d/%d", sq.Sequence, sq.Order, sq.Live, o.slices))
		}
		fmt.Fprintf(out, "shard %d: serves seq %d at %d; %s; %d deletions; ~%.1f more before it has nothing live\n",
			sh.Shard, sh.Serving.Sequence, sh.Serving.Length, strings.Join(live, ", "), sh.Deletions, sh.ExpectedDeletionsBeforeRetrain)
	}
	rcs, err := cl.ListReceipts(ctx, &api.ListReceiptsRequest{Model: name})
	if err != nil {
		return err
	}
	if len(rcs.Receipts) > 0 {
		b, _ := json.MarshalIndent(rcs.Receipts[len(rcs.Receipts)-1], "", "  ")
		fmt.Fprintf(out, "last receipt (GET /v1/deletions/%s):\n%s\n", rcs.Receipts[len(rcs.Receipts)-1].ID, b)
	}

	step("stop the server")
	stopped = true
	if err := srv.stop(); err != nil {
		return fmt.Errorf("demo: s3t serve: %w (see %s)", err, logPath)
	}
	fmt.Fprintf(out, "server stopped cleanly; demo done in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// demoSpec is the demo's model: the committed ViT with LoRA (rank 8) on the ten digits, S3T with
// the cyclic selector, retraining off (the demo shows the served prefixes shrinking).
func demoSpec(shards, slices, sequences, epochs, batch int, lr float64) api.ModelSpec {
	labels := make([]string, dataset.Classes)
	for i := range labels {
		labels[i] = fmt.Sprint(i)
	}
	return api.ModelSpec{
		Backbone: "vit", Labels: labels,
		PEFT:     api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank": 8}`)},
		S3T:      api.S3TConfig{Shards: shards, Slices: slices, Sequences: sequences, Selector: "cyclic"},
		Training: api.TrainingConfig{Epochs: epochs, LearningRate: lr, BatchSize: batch},
		Retrain:  api.RetrainPolicy{Disabled: true},
		Seed:     1,
	}
}

// trainDemoModel registers the committed ViT (as "vit"), creates the model, uploads the
// training digits as NDJSON and trains it, drawing the progress on errw, until every job is
// done.
func trainDemoModel(ctx context.Context, cl *api.Client, errw io.Writer, name string, spec api.ModelSpec, data *trainData) error {
	if _, err := cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		return err
	}
	if _, err := cl.CreateModel(ctx, &api.CreateModelRequest{Name: name, ModelSpec: spec}); err != nil {
		return err
	}
	const chunk = 500
	for lo := 0; lo < len(data.train); lo += chunk {
		var smps []api.Sample
		for _, e := range data.train[lo:min(lo+chunk, len(data.train))] {
			in, _ := json.Marshal(e.Input)
			smps = append(smps, api.Sample{ID: e.ID, Input: in, Label: spec.Labels[e.Label]})
		}
		if _, err := cl.UploadSamples(ctx, &api.UploadSamplesRequest{Model: name, Samples: smps}); err != nil {
			return err
		}
	}
	start := time.Now()
	if _, err := cl.StartTraining(ctx, &api.StartTrainingRequest{Model: name}); err != nil {
		return err
	}
	bar := newStatusLine(errw)
	last, err := cl.WatchTraining(ctx, &api.GetTrainingRequest{Model: name}, func(st *api.TrainingStatus) error {
		bar.set(trainingLine(st, time.Since(start), nil))
		return nil
	})
	bar.end()
	if err != nil {
		return err
	}
	for _, j := range last.Jobs {
		if j.State != api.TrainingDone {
			return fmt.Errorf("training job %d (shard %d, sequence %d) ended %s: %s", j.ID, j.Shard, j.Sequence, j.State, j.Message)
		}
	}
	return nil
}

func runtimeName(r *api.Runtime) string {
	if r == nil {
		return "?"
	}
	if r.Error != "" {
		return "no runtime (" + r.Error + ")"
	}
	return r.Provider
}

func servedOf(s []api.ShardServed, shard int) string {
	for _, x := range s {
		if x.Shard == shard {
			if x.Length == 0 {
				return "nothing"
			}
			return fmt.Sprintf("seq %d, %d stages", x.Sequence, x.Length)
		}
	}
	return "?"
}

func servedString(s []api.ShardServed) string {
	var parts []string
	for _, x := range s {
		parts = append(parts, fmt.Sprintf("shard %d: %s", x.Shard, servedOf(s, x.Shard)))
	}
	return strings.Join(parts, "; ")
}

// trainingLine is one progress line of a training: the model's totals (the server's, which count
// each unit's latest job), and the jobs running, stalled and done among those follow reports (all
// when nil), so that a training's earlier jobs of the model are not counted done in it. A
// stalled job (running, but its worker stopped renewing its lease) counts as stalled, not
// running, and gives neither loss nor rate: its figures are its dead worker's last. The loss is
// the latest a job reported (a done job keeps its last), so that the line does not read 0
// between one job's end and the next one's first step, nor once training is done; the rate is
// "?" while the running jobs have none yet.
func trainingLine(st *api.TrainingStatus, el time.Duration, follow func(id int64) bool) string {
	const width = 24
	n := int(st.Progress * width)
	running, stalled, done := 0, 0, 0
	var (
		rate     float64
		loss     = "?"
		lossAt   time.Time
		haveLoss bool
	)
	for _, j := range st.Jobs {
		if follow != nil && !follow(j.ID) {
			continue
		}
		switch {
		case j.State == api.TrainingRunning && j.Stalled:
			stalled++
			continue
		case j.State == api.TrainingRunning:
			running++
			rate += j.ExamplesPerSecond
		case j.State == api.TrainingDone:
			done++
		default:
			continue
		}
		if (j.Step > 0 || j.Loss != 0) && (!haveLoss || j.Updated.After(lossAt)) {
			loss, lossAt, haveLoss = fmt.Sprintf("%.3f", j.Loss), j.Updated, true
		}
	}
	jobs := fmt.Sprintf("jobs %d done, %d running", done, running)
	if stalled > 0 {
		jobs += fmt.Sprintf(", %d stalled", stalled)
	}
	rateText := fmt.Sprintf("%.0f", rate)
	if running > 0 && rate == 0 {
		rateText = "?" // the running jobs have not reported a rate yet
	}
	eta := "?" // the server's 0: no running job has an estimate yet (or only stalled ones do)
	if st.ETASeconds > 0 || st.Done {
		eta = (time.Duration(st.ETASeconds) * time.Second).String()
	}
	return fmt.Sprintf("[%s%s] %3.0f%%  %d/%d steps  %s  loss %s  %s ex/s  ETA %s  (%s)",
		strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*st.Progress, st.Step, st.Steps, jobs, loss, rateText,
		eta, el.Round(time.Second))
}

// stallLines returns a line for each job follow reports (all when nil) that stalled since the
// previous status (its worker stopped renewing its lease: which worker, and when), and one for
// each that was stalled and no longer is (requeued for another worker, or its worker renewing
// its lease again). stalled holds the stalled jobs between calls.
func stallLines(st *api.TrainingStatus, follow func(id int64) bool, stalled map[int64]bool) []string {
	var out []string
	for _, j := range st.Jobs {
		if follow != nil && !follow(j.ID) {
			continue
		}
		job := fmt.Sprintf("job %d (shard %d, sequence %d)", j.ID, j.Shard, j.Sequence)
		now := j.State == api.TrainingRunning && j.Stalled
		switch {
		case now && !stalled[j.ID]:
			stalled[j.ID] = true
			worker := "its worker"
			if j.Worker != "" {
				worker = "worker " + j.Worker
			}
			at := ""
			if !j.LeaseUntil.IsZero() {
				at = " at " + j.LeaseUntil.Local().Format(time.TimeOnly)
			}
			out = append(out, fmt.Sprintf("%s stalled: %s stopped renewing its lease%s; the job is requeued once the lease has been expired for one more lease", job, worker, at))
		case !now && stalled[j.ID]:
			delete(stalled, j.ID)
			switch j.State {
			case api.TrainingQueued:
				out = append(out, job+" requeued for another worker")
			case api.TrainingRunning:
				out = append(out, fmt.Sprintf("%s running again on worker %s", job, j.Worker))
			}
		}
	}
	return out
}
