package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/s3test"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// clusterSchema creates an empty schema on the PostgreSQL test server, dropped at the end,
// and returns base with search_path set to it.
func clusterSchema(t *testing.T, base string) (string, *sql.DB) {
	t.Helper()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := fmt.Sprintf("t_cluster_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("postgres test server: %v", err)
	}
	t.Cleanup(func() { db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	if _, err := db.Exec(`SET search_path TO ` + schema); err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // keeps the search_path of the one connection
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema, db
}

// workerProc is an `s3t worker` process (this test binary as the s3t command).
type workerProc struct {
	cmd     *exec.Cmd
	workDir string
	log     *syncBuf
	done    chan error
	exited  chan struct{} // closed once the process has exited
}

func startWorkerProc(t *testing.T, dsn, blobURL, workDir string, args ...string) *workerProc {
	t.Helper()
	p := &workerProc{workDir: workDir, log: &syncBuf{}, done: make(chan error, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], append([]string{"worker", "--database-url", dsn, "--blob-url", blobURL, "--work-dir", workDir,
		"--lease", "3s", "--heartbeat", "500ms", "--sweep-every", "300ms"}, args...)...)
	p.cmd.Env = append(os.Environ(), "S3T_TEST_AS_CLI=1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { err := p.cmd.Wait(); close(p.exited); p.done <- err }()
	t.Cleanup(p.kill)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log.String(), "s3t worker") {
		select {
		case err := <-p.done:
			t.Fatalf("s3t worker exited: %v\n%s", err, p.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3t worker not up after 30 s\n%s", p.log)
		}
	}
	return p
}

func (p *workerProc) kill() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
	}
}

// stop shuts the worker down gracefully (SIGTERM).
func (p *workerProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("s3t worker exited with %v\n%s", err, p.log)
		}
		p.done <- nil
	case <-time.After(60 * time.Second):
		t.Fatalf("s3t worker did not stop\n%s", p.log)
	}
}

// localStages returns the local stage checkpoint folders of model m under a worker's work
// dir, as [shard, sequence, stage].
func localStages(workDir string) [][3]int {
	var out [][3]int
	dirs, _ := filepath.Glob(filepath.Join(workDir, "models", "m", "shard-*", "seq-*", "stage-*"))
	for _, d := range dirs {
		var s [3]int
		rel, _ := filepath.Rel(filepath.Join(workDir, "models", "m"), d)
		if _, err := fmt.Sscanf(filepath.ToSlash(rel), "shard-%d/seq-%d/stage-%d", &s[0], &s[1], &s[2]); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// TestCluster runs a cluster as separate processes sharing one PostgreSQL schema and one S3
// bucket: two serve replicas (--train-workers 0) and two workers. It trains m=4 shards
// across the workers, SIGKILLs one worker mid-stage (the other requeues its job after the
// lease and finishes), serves from both replicas, deletes from both concurrently (with the
// same ids sent to both) and checks exactly-once receipts, consistent serving, and that no
// deleted sample survives in the samples table, the bucket or the workers' local checkpoints.
func TestCluster(t *testing.T) {
	base := os.Getenv("S3T_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("S3T_TEST_DATABASE_URL is not set: the cluster test needs a PostgreSQL server (make test starts one)")
	}
	if testing.Short() {
		t.Skip("trains a model on a multi-process cluster")
	}
	ctx := context.Background()
	dsn, db := clusterSchema(t, base)
	burl := s3test.BucketURL(t) // sets the S3 credentials in the environment the processes inherit
	tmp := t.TempDir()
	// Migrate once first, as the README says (s3t migrate).
	if code := Execute(ctx, []string{"migrate", "--database-url", dsn}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("s3t migrate: exit %d", code)
	}
	repl := func(name string) *serverProc {
		return startServeProc(t, filepath.Join(tmp, name), "--database-url", dsn, "--blob-url", burl, "--train-workers", "0")
	}
	a, b := repl("a"), repl("b")
	w1 := startWorkerProc(t, dsn, burl, filepath.Join(tmp, "w1"))
	w2 := startWorkerProc(t, dsn, burl, filepath.Join(tmp, "w2"))

	ids, inputs := crashModel(t, a.cl, 4, 2, 2, 480)
	if _, err := a.cl.StartTraining(ctx, &api.StartTrainingRequest{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	// Kill w1 while it runs a job, once a stage is published and before all are.
	pid1 := fmt.Sprintf(":%d:", w1.cmd.Process.Pid)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		done, total := trainedStages(t, a.cl)
		st, err := a.cl.GetTraining(ctx, &api.GetTrainingRequest{Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		running := false
		for _, j := range st.Jobs {
			running = running || (j.State == api.TrainingRunning && strings.Contains(j.Worker, pid1))
		}
		if done >= 1 && done < total && running {
			t.Logf("killing worker 1 with %d of %d stages published", done, total)
			break
		}
		if done == total || time.Now().After(deadline) {
			t.Fatalf("could not catch worker 1 mid-stage (%d of %d stages)\nw1:\n%s\nw2:\n%s", done, total, w1.log, w2.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	w1.kill()
	// Its job reads stalled once its lease (3 s) has expired, with no ETA, until w2 requeues it
	// one more lease later (it read running with its last ETA all along); the events come every
	// second.
	var stalled *api.TrainingJob
	st, err := b.cl.WatchTraining(ctx, &api.GetTrainingRequest{Model: "m"}, func(ts *api.TrainingStatus) error {
		for _, j := range ts.Jobs {
			if j.Stalled && stalled == nil && strings.Contains(j.Worker, pid1) {
				stalled = &j
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("watch training: %v\nw2:\n%s", err, w2.log)
	}
	if stalled == nil || stalled.State != api.TrainingRunning || stalled.ETASeconds != 0 || stalled.ExamplesPerSecond != 0 ||
		!strings.Contains(stalled.Message, "stopped renewing its lease") {
		t.Fatalf("the killed worker's job was not seen stalled before it was requeued (first stalled job: %+v)", stalled)
	}
	for _, j := range st.Jobs {
		if j.State != api.TrainingDone {
			t.Fatalf("job %+v\nw2:\n%s", j, w2.log)
		}
	}
	if done, total := trainedStages(t, b.cl); done != total {
		t.Fatalf("%d of %d stages trained\nw2:\n%s", done, total, w2.log)
	}
	if !strings.Contains(w2.log.String(), "requeued training jobs of a lost worker") {
		t.Fatalf("worker 2 did not requeue the killed worker's job\n%s", w2.log)
	}

	// Both replicas serve the same prefixes and predictions.
	in := []json.RawMessage{json.RawMessage(pixelsJSON(0.3)), json.RawMessage(pixelsJSON(0.7))}
	pa, err := a.cl.Predict(ctx, &api.PredictRequest{Name: "m", Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.cl.Predict(ctx, &api.PredictRequest{Name: "m", Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	if !servedEqual(pa.Served, pb.Served) || fmt.Sprint(pa.Predictions) != fmt.Sprint(pb.Predictions) || len(pa.Served) != 4 {
		t.Fatalf("replicas disagree after training:\nA %+v %+v\nB %+v %+v", pa.Served, pa.Predictions, pb.Served, pb.Predictions)
	}

	// Concurrent deletions through both replicas, from two (shard, slice) units so that some
	// stages stay untouched (and the erasure checks below have something to tell apart):
	// unit (0, 1) cuts shard 0's sequence after stage 1, unit (1, 0) kills shard 1. Samples of
	// the first go through A, of the second through B, and 20 more of (0, 1) through both at
	// once (duplicates).
	unit := func(shard, slice, n int) []string {
		rows, err := db.Query(`SELECT id FROM samples WHERE model = 'm' AND shard = $1 AND slice = $2 ORDER BY id LIMIT $3`, shard, slice, n)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			rows.Scan(&id)
			out = append(out, id)
		}
		if len(out) < n {
			t.Fatalf("unit (%d, %d) holds %d samples, want %d", shard, slice, len(out), n)
		}
		return out
	}
	u01, u10 := unit(0, 1, 45), unit(1, 0, 25)
	viaA, viaB, dups := u01[:25], u10, u01[25:]
	type got struct {
		rc   *api.Receipt
		gone *api.Receipt
		via  string
	}
	var mu sync.Mutex
	results := map[string][]got{}
	var wg sync.WaitGroup
	del := func(p *serverProc, via string, list []string) {
		defer wg.Done()
		for _, id := range list {
			rc, err := p.cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "m", ID: id})
			g := got{rc: rc, via: via}
			if err != nil {
				var e *api.Error
				if !api.IsGone(err) || !asAPIError(err, &e) || e.Receipt == nil {
					t.Errorf("delete %s via %s: %v", id, via, err)
					continue
				}
				g.gone = e.Receipt
			}
			mu.Lock()
			results[id] = append(results[id], g)
			mu.Unlock()
		}
	}
	wg.Add(4)
	go del(a, "A", append(slices.Clone(viaA), dups...))
	go del(b, "B", append(slices.Clone(viaB), dups...))
	rev := slices.Clone(dups)
	slices.Reverse(rev)
	go del(a, "A2", rev)
	go del(b, "B2", rev)
	wg.Wait()
	if t.Failed() {
		return
	}
	deleted := slices.Concat(viaA, viaB, dups)
	isDeleted := map[string]bool{}
	for _, id := range deleted {
		isDeleted[id] = true
	}
	var maxVersion int64
	receipts := map[string]string{} // sample -> receipt id
	for _, id := range deleted {
		var first string
		for _, g := range results[id] {
			rid := ""
			if g.rc != nil {
				rid = g.rc.ID
				if first != "" && g.gone == nil {
					// Two fresh receipts for one sample.
					if rid != first {
						t.Fatalf("sample %s got two receipts: %s and %s", id, first, rid)
					}
				}
				maxVersion = max(maxVersion, g.rc.LedgerVersion)
			}
			if g.gone != nil {
				rid = g.gone.ID
			}
			if first == "" {
				first = rid
			} else if rid != first {
				t.Fatalf("sample %s: receipts %s and %s", id, first, rid)
			}
		}
		fresh := 0
		for _, g := range results[id] {
			if g.gone == nil {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("sample %s: %d fresh receipts (results %+v)", id, fresh, results[id])
		}
		receipts[id] = first
	}
	for id, rid := range receipts {
		for _, p := range []*serverProc{a, b} {
			rc, err := p.cl.GetReceipt(ctx, &api.GetReceiptRequest{ID: rid})
			if err != nil || rc.SampleID != id {
				t.Fatalf("receipt %s of %s from %s: %+v, %v", rid, id, p.addr, rc, err)
			}
		}
	}
	for _, p := range []*serverProc{a, b} {
		rcs, err := p.cl.AllReceipts(ctx, "m")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, rc := range rcs {
			if seen[rc.SampleID] || receipts[rc.SampleID] != rc.ID {
				t.Fatalf("receipt list of %s: %+v (duplicate or unknown)", p.addr, rc)
			}
			seen[rc.SampleID] = true
		}
		if len(seen) != len(receipts) {
			t.Fatalf("%s lists %d receipts, want %d", p.addr, len(seen), len(receipts))
		}
	}

	// Both replicas serve the same prefixes, at a version no older than any receipt's.
	pa, err = a.cl.Predict(ctx, &api.PredictRequest{Name: "m", Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	pb, err = b.cl.Predict(ctx, &api.PredictRequest{Name: "m", Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	if !servedEqual(pa.Served, pb.Served) || fmt.Sprint(pa.Predictions) != fmt.Sprint(pb.Predictions) {
		t.Fatalf("replicas disagree after deletions:\nA %+v\nB %+v", pa.Served, pb.Served)
	}
	if pa.LedgerVersion < maxVersion || pb.LedgerVersion < maxVersion {
		t.Fatalf("served at ledger versions %d and %d, below a receipt's %d", pa.LedgerVersion, pb.LedgerVersion, maxVersion)
	}
	m, err := a.cl.GetModel(ctx, &api.GetModelRequest{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range pa.Served {
		if sv.Length > m.Live[sv.Shard][sv.Sequence] {
			t.Fatalf("shard %d serves %d stages, live prefix is %d", sv.Shard, sv.Length, m.Live[sv.Shard][sv.Sequence])
		}
	}

	// No deleted sample is readable: the API, the samples table, the bucket, the local work dirs.
	for _, id := range deleted {
		for _, p := range []*serverProc{a, b} {
			if _, err := p.cl.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: id}); !api.IsGone(err) {
				t.Fatalf("GET deleted sample %s from %s: %v, want 410", id, p.addr, err)
			}
		}
	}
	var n, stored int
	if err := db.QueryRow(`SELECT count(*) FROM samples WHERE model = 'm' AND id = ANY(string_to_array($1, chr(1)))`, strings.Join(deleted, "\x01")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows of samples hold deleted samples", n)
	}
	var rest []string
	for _, id := range ids {
		if !isDeleted[id] {
			rest = append(rest, id)
		}
	}
	if err := db.QueryRow(`SELECT count(*) FROM samples WHERE model = 'm' AND id = ANY(string_to_array($1, chr(1)))`, strings.Join(rest, "\x01")).Scan(&stored); err != nil || stored != len(rest) {
		t.Fatalf("the samples query finds %d of %d stored samples (%v): it proves nothing", stored, len(rest), err)
	}
	blobs, err := store.OpenBlobs(ctx, burl)
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	keys, err := blobs.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// cut[k][b]: the lowest stage of sequence b of shard k that saw a deleted sample.
	cut := map[[2]int]int{}
	for id := range receipts {
		rc, _ := a.cl.GetReceipt(ctx, &api.GetReceiptRequest{ID: receipts[id]})
		for bq, seq := range m.Sequences[rc.Shard] {
			pos := slices.Index(seq, rc.Slice) + 1
			if c, ok := cut[[2]int{rc.Shard, bq}]; !ok || pos < c {
				cut[[2]int{rc.Shard, bq}] = pos
			}
		}
	}
	firstStages := map[[2]int]bool{} // (shard, sequence) with a generation-1 stage-1 blob
	for _, k := range keys {
		sh, sq, gen, stg, ok := training.ParseCheckpointKey("m", k)
		if !ok {
			continue
		}
		if c, ok := cut[[2]int{sh, sq}]; ok && stg >= c {
			t.Fatalf("checkpoint blob %s saw a deleted sample and survives", k)
		}
		if gen == 1 && stg == 1 {
			firstStages[[2]int{sh, sq}] = true
		}
	}
	for k := range 4 {
		for bq := range m.Sequences[k] {
			c, ok := cut[[2]int{k, bq}]
			if (!ok || c > 1) && !firstStages[[2]int{k, bq}] {
				t.Fatalf("the untouched checkpoint C[%d, %d, 1] of generation 1 is missing from the bucket listing: the check proves nothing", k, bq)
			}
		}
	}
	for id := range receipts {
		needle := training.EncodeInput(inputs[id])
		for _, k := range keys {
			if bb, err := blobs.Get(ctx, k); err == nil && bytes.Contains(bb, needle) {
				t.Fatalf("the input of deleted sample %s is in blob %s", id, k)
			}
		}
		break
	}

	// Local stage checkpoints: the live worker erases the switched-off ones within a sweep;
	// the killed one, restarted on its work dir, erases them before it takes any job.
	w1 = startWorkerProc(t, dsn, burl, w1.workDir)
	time.Sleep(2 * time.Second) // a few sweeps of the live worker
	kept := 0
	for _, w := range []*workerProc{w1, w2} {
		for _, s := range localStages(w.workDir) {
			if c, ok := cut[[2]int{s[0], s[1]}]; ok && s[2] >= c {
				t.Fatalf("local checkpoint shard-%d/seq-%d/stage-%d in %s saw a deleted sample and survives\n%s", s[0], s[1], s[2], w.workDir, w.log)
			}
			kept++
		}
	}
	erasedLines := strings.Count(w1.log.String()+w2.log.String(), "erased a local stage checkpoint")
	if erasedLines == 0 {
		t.Fatalf("no worker erased a local stage checkpoint, yet the deletions cut stages they trained\nw1:\n%s\nw2:\n%s", w1.log, w2.log)
	}
	if kept == 0 {
		t.Fatal("no local stage checkpoint is left: the workers erased untouched ones too (or the check proves nothing)")
	}
	t.Logf("%d deletions (%d duplicates sent to both replicas); %d local stage checkpoints that saw no deleted sample are kept, %d erased", len(deleted), len(dups), kept, erasedLines)
	w1.stop(t)
	w2.stop(t)
	a.stop(t)
	b.stop(t)
}

func servedEqual(a, b []api.ShardServed) bool {
	return slices.Equal(a, b)
}

func asAPIError(err error, e **api.Error) bool { return errors.As(err, e) }

// TestServeReplicaSweepsLocalCheckpoints runs a serve replica that trains (its in-process
// worker) beside one that does not, on one PostgreSQL schema and bucket: a deletion made
// through the other replica purges the bucket there, and this replica's sweep erases its own
// local stage checkpoint that saw the sample (they stayed, even across a restart), keeping the
// one that did not. A replica on PostgreSQL without a shared bucket is refused.
func TestServeReplicaSweepsLocalCheckpoints(t *testing.T) {
	base := os.Getenv("S3T_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("S3T_TEST_DATABASE_URL is not set: the test needs a PostgreSQL server (make test starts one)")
	}
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	dsn, _ := clusterSchema(t, base)
	tmp := t.TempDir()
	if code := Execute(ctx, []string{"migrate", "--database-url", dsn}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("s3t migrate: exit %d", code)
	}
	var stderr bytes.Buffer
	if code := Execute(ctx, []string{"serve", "--database-url", dsn, "--data", filepath.Join(tmp, "x")}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "S3T_BLOB_URL") {
		t.Fatalf("serve on PostgreSQL without a bucket: exit %d, %s; want a usage error", code, &stderr)
	}
	burl := "file://" + filepath.Join(tmp, "bucket") + "?create_dir=true"
	a := startServeProc(t, filepath.Join(tmp, "a"), "--database-url", dsn, "--blob-url", burl, "--train-workers", "0")
	d := startServeProc(t, filepath.Join(tmp, "d"), "--database-url", dsn, "--blob-url", burl, "--train-workers", "1", "--sweep-every", "200ms")
	// A second training replica on d's --data is refused: the two shared its work folder.
	stderr.Reset()
	if code := Execute(ctx, []string{"serve", "--database-url", dsn, "--blob-url", burl, "--data", filepath.Join(tmp, "d"), "--addr", "127.0.0.1:0"},
		&bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "in use by another s3t process") {
		t.Fatalf("a second training replica on one --data: exit %d, %s", code, &stderr)
	}
	ids, _ := crashModel(t, a.cl, 1, 2, 1, 160)
	// A worker or a replica given another bucket than the one the models were made with stops
	// at start, naming it (an operator's walkthrough: a worker with the wrong bucket failed the
	// model's jobs for good within seconds, each attempt on "not found").
	wrong := "file://" + filepath.Join(tmp, "wrong") + "?create_dir=true"
	for _, args := range [][]string{
		{"worker", "--database-url", dsn, "--blob-url", wrong, "--work-dir", filepath.Join(tmp, "w")},
		{"serve", "--database-url", dsn, "--blob-url", wrong, "--data", filepath.Join(tmp, "s"), "--addr", "127.0.0.1:0"},
	} {
		stderr.Reset()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second) // one that starts stops, and fails below
		code := Execute(sctx, args, &bytes.Buffer{}, &stderr)
		cancel()
		if code != 1 ||
			!strings.Contains(stderr.String(), "is not the one this ledger's models were made with") || !strings.Contains(stderr.String(), "backbones/vit/model.onnx (used by m)") {
			t.Fatalf("%s with another bucket: exit %d, %s; want exit 1 naming the bucket and the missing backbone", args[0], code, &stderr)
		}
	}
	if _, err := a.cl.StartTraining(ctx, &api.StartTrainingRequest{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	if st, err := a.cl.WatchTraining(ctx, &api.GetTrainingRequest{Model: "m"}, func(*api.TrainingStatus) error { return nil }); err != nil || !st.Done {
		t.Fatalf("training: %+v, %v\n%s", st, err, d.log)
	}
	work := filepath.Join(tmp, "d", "work")
	if got := localStages(work); len(got) != 2 {
		t.Fatalf("replica d's local stages %v, want stages 1 and 2 of shard 0", got)
	}
	// Delete, through a, a sample of the sequence's second slice: stage 2 saw it, stage 1 did not.
	m, err := a.cl.GetModel(ctx, &api.GetModelRequest{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	second, victim := m.Sequences[0][0][1], ""
	for _, id := range ids {
		info, err := a.cl.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if info.Placement.Slice == second {
			victim = id
			break
		}
	}
	if _, err := a.cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "m", ID: victim}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := localStages(work)
		if len(got) == 1 && got[0] == [3]int{0, 0, 1} {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica d's local stages %v after the deletion, want stage 1 only\n%s", got, d.log)
		}
	}
}

// TestWorkerSurvivesSIGHUP: SIGHUP (systemctl reload, a closed terminal) ended s3t worker at
// once, as a kill would, interrupting its jobs; it is now logged and ignored, and SIGTERM still
// stops the worker cleanly.
func TestWorkerSurvivesSIGHUP(t *testing.T) {
	base := os.Getenv("S3T_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("S3T_TEST_DATABASE_URL is not set: the test needs a PostgreSQL server (make test starts one)")
	}
	ctx := context.Background()
	dsn, _ := clusterSchema(t, base)
	if code := Execute(ctx, []string{"migrate", "--database-url", dsn}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("s3t migrate: exit %d", code)
	}
	tmp := t.TempDir()
	w := startWorkerProc(t, dsn, "file://"+filepath.Join(tmp, "bucket")+"?create_dir=true", filepath.Join(tmp, "work"))
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(w.log.String(), "SIGHUP: a worker has nothing to read again"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-w.done:
			t.Fatalf("s3t worker exited on SIGHUP: %v\n%s", err, w.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SIGHUP line in the log\n%s", w.log)
		}
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("s3t worker after SIGTERM: %v\n%s", err, w.log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("s3t worker did not stop on SIGTERM\n%s", w.log)
	}
}
