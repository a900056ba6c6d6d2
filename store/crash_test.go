package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that uploads and deletes batches in
// a loop and appends an acknowledgement line after each commit; the parent SIGKILLs it at
// random points, reopens the ledger and checks it.

const crashChildEnv = "S3T_STORE_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if err := crashChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const crashModel = "crash"

// inputPattern finds the inputs the crash child stores ("in-" + id) in raw database bytes.
var inputPattern = regexp.MustCompile(`in-(g[0-9a-f]{8}-b[0-9]+-k[0-9]+-i[0-9]+)`)

// batchIDs returns the ids of batch prefix p holding k samples; k is part of every id, so
// the checker can tell a partial batch from the ids alone.
func batchIDs(p string, k int) []string {
	ids := make([]string, k)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-k%d-i%d", p, k, i)
	}
	return ids
}

func parseBatch(id string) (prefix string, k int, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 4 || !strings.HasPrefix(parts[2], "k") {
		return "", 0, false
	}
	k, err := strconv.Atoi(parts[2][1:])
	return parts[0] + "-" + parts[1], k, err == nil
}

// ack is one acknowledged operation: "put PREFIX K -", "del PREFIX K RECEIPT..." or
// "job ID 0 -", each line ending in " ." so that a torn last line is ignored.
type ack struct {
	op, prefix string
	k          int
	receipts   []string
}

func readAcks(path string) ([]ack, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ack
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[len(fs)-1] != "." {
			continue // torn last line
		}
		k, err := strconv.Atoi(fs[2])
		if err != nil {
			continue
		}
		out = append(out, ack{op: fs[0], prefix: fs[1], k: k, receipts: fs[3 : len(fs)-1]})
	}
	return out, sc.Err()
}

// endTornLine ends the last line of the acknowledgements file when a kill tore it (a short
// write), so that the next line appended through f does not join it: "del P K R1 R2put P2 K2 - ."
// read as a deletion with bogus receipts, which the checker then failed to find (a CI run).
func endTornLine(f *os.File, path string) error {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 || b[len(b)-1] == '\n' {
		return err
	}
	_, err = f.WriteString("\n")
	return err
}

func crashChild(dir string) error {
	ctx := context.Background()
	s, err := Open(ctx, SQLiteDSN(dir), WithLogger(quiet))
	if err != nil {
		return err
	}
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	sp := spec(crashModel, 4, 4, 2)
	if _, err := s.CreateModel(ctx, sp); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	acksPath := filepath.Join(dir, "acks")
	acks, err := readAcks(acksPath)
	if err != nil {
		return err
	}
	live := map[string]int{} // acknowledged uploaded batches not yet acknowledged deleted
	for _, a := range acks {
		switch a.op {
		case "put":
			live[a.prefix] = a.k
		case "del":
			delete(live, a.prefix)
		}
	}
	f, err := os.OpenFile(acksPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := endTornLine(f, acksPath); err != nil {
		return err
	}
	jobs, err := s.NewJobs(JobsConfig{})
	if err != nil {
		return err
	}
	gen := rand.Uint32()
	for n := 0; ; n++ {
		if len(live) == 0 || rand.IntN(3) > 0 {
			prefix := fmt.Sprintf("g%08x-b%d", gen, n)
			k := 1 + rand.IntN(40)
			batch := make([]Sample, k)
			for i, id := range batchIDs(prefix, k) {
				batch[i] = Sample{ID: id, Label: strconv.Itoa(i % 3), Input: []byte("in-" + id)}
			}
			if _, err := s.PutSamples(ctx, crashModel, batch); err != nil {
				return err
			}
			fmt.Fprintf(f, "put %s %d - .\n", prefix, k)
			live[prefix] = k
			if n%5 == 0 {
				id, err := jobs.Enqueue(ctx, "train", map[string]string{"batch": prefix})
				if err != nil {
					return err
				}
				fmt.Fprintf(f, "job %d 0 - .\n", id)
			}
			continue
		}
		var prefix string
		for p := range live {
			prefix = p
			break
		}
		k := live[prefix]
		ids := batchIDs(prefix, k)
		var receipts []string
		if k == 1 {
			rec, err := s.Delete(ctx, crashModel, ids[0])
			var gone *GoneError
			if errors.As(err, &gone) {
				rec, err = gone.Receipt, nil
			}
			if err != nil {
				return err
			}
			receipts = append(receipts, rec.ID)
		} else {
			res, err := s.DeleteBatch(ctx, crashModel, ids)
			if err != nil {
				return err
			}
			for _, r := range res {
				if r.Err != nil && !errors.Is(r.Err, ErrGone) {
					return r.Err
				}
				receipts = append(receipts, r.Receipt.ID)
			}
		}
		fmt.Fprintf(f, "del %s %d %s .\n", prefix, k, strings.Join(receipts, " "))
		delete(live, prefix)
	}
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rounds := 12
	ctx := context.Background()
	for round := range rounds {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child exited on its own (%v): %s", round, err, stderr.String())
		}
		checkCrashLedger(t, ctx, dir, round)
		if t.Failed() {
			return
		}
	}
	acks, _ := readAcks(filepath.Join(dir, "acks"))
	var puts, dels, jobs int
	for _, a := range acks {
		switch a.op {
		case "put":
			puts++
		case "del":
			dels++
		case "job":
			jobs++
		}
	}
	t.Logf("%d rounds killed; %d upload batches, %d deletion batches and %d jobs acknowledged", rounds, puts, dels, jobs)
	if puts == 0 || dels == 0 {
		t.Errorf("the child made too little progress to test anything")
	}
}

// checkCrashLedger reopens the ledger after a kill and checks it.
func checkCrashLedger(t *testing.T, ctx context.Context, dir string, round int) {
	t.Helper()
	s, err := Open(ctx, SQLiteDSN(dir), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetModel(ctx, crashModel); errors.Is(err, ErrNotFound) {
		return // killed before the model was created
	}
	checkLedger(t, s, crashModel)

	// Nothing acknowledged is lost.
	acks, err := readAcks(filepath.Join(dir, "acks"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := s.NewJobs(JobsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		switch a.op {
		case "job":
			id, _ := strconv.ParseInt(a.prefix, 10, 64)
			if _, err := jobs.Get(ctx, id); err != nil {
				t.Errorf("round %d: acknowledged job %d lost: %v", round, id, err)
			}
		case "put":
			for _, id := range batchIDs(a.prefix, a.k) {
				if _, err := s.GetSample(ctx, crashModel, id); err != nil && !errors.Is(err, ErrGone) {
					t.Errorf("round %d: acknowledged sample %s lost: %v", round, id, err)
				}
			}
		case "del":
			for _, r := range a.receipts {
				rec, err := s.GetReceipt(ctx, r)
				if err != nil {
					t.Errorf("round %d: acknowledged receipt %s lost: %v", round, r, err)
					continue
				}
				if _, err := s.GetSample(ctx, crashModel, rec.SampleID); !errors.Is(err, ErrGone) {
					t.Errorf("round %d: sample %s of receipt %s readable: %v", round, rec.SampleID, r, err)
				}
			}
		}
	}

	// No partial batch: every batch is wholly stored, wholly deleted or absent.
	type tally struct{ k, live, gone int }
	batches := map[string]*tally{}
	count := func(q string, gone bool) {
		rows, err := s.db.QueryContext(ctx, q, crashModel)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			rows.Scan(&id)
			p, k, ok := parseBatch(id)
			if !ok {
				t.Fatalf("unexpected id %q", id)
			}
			b := batches[p]
			if b == nil {
				b = &tally{k: k}
				batches[p] = b
			}
			if gone {
				b.gone++
			} else {
				b.live++
			}
		}
	}
	count(`SELECT id FROM samples WHERE model = $1`, false)
	count(`SELECT sample_id FROM deletions WHERE model = $1`, true)
	for p, b := range batches {
		if b.live+b.gone != b.k || (b.gone != 0 && b.gone != b.k) {
			t.Errorf("round %d: batch %s partial: %d stored, %d deleted of %d", round, p, b.live, b.gone, b.k)
		}
	}
	// No deleted input is left in the database files once they are compacted. (A checkpoint
	// alone is not enough: see Compact.)
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Receipts(ctx, crashModel)
	if err != nil {
		t.Fatal(err)
	}
	files := [][]byte{}
	for _, f := range []string{LedgerFile, LedgerFile + "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	deleted := make(map[string]bool, len(recs))
	for _, r := range recs {
		deleted[r.SampleID] = true
	}
	liveSeen := 0
	for i, b := range files {
		for _, m := range inputPattern.FindAllSubmatch(b, -1) {
			if deleted[string(m[1])] {
				t.Errorf("round %d: input of deleted sample %s still in file %d", round, m[1], i)
			} else {
				liveSeen++
			}
		}
	}
	if m, _ := s.GetModel(ctx, crashModel); m.Samples > 0 && liveSeen == 0 {
		t.Errorf("round %d: no stored input found in the files; the scan is broken", round)
	}
	// Every receipt queued its purge (the child registers no purger, so all remain).
	var missing int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deletions d WHERE NOT EXISTS (SELECT 1 FROM purges p WHERE p.id = d.receipt)`).Scan(&missing); err != nil || missing != 0 {
		t.Errorf("round %d: %d receipts without a queued purge (%v)", round, missing, err)
	}
}

// TestTornAckLine: a torn last acknowledgement stays torn (ignored), and the next one is read.
func TestTornAckLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acks")
	if err := os.WriteFile(path, []byte("put g1-b0 2 - .\ndel g1-b0 2 r1 r"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := endTornLine(f, path); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "put g2-b1 30 - .\n")
	acks, err := readAcks(path)
	if err != nil || len(acks) != 2 || acks[0].op != "put" || acks[1].op != "put" || acks[1].prefix != "g2-b1" || len(acks[1].receipts) != 1 {
		t.Fatalf("acks %+v, %v: want the two puts, the torn deletion ignored", acks, err)
	}
}
