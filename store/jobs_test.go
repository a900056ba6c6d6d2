package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

type trainArgs struct {
	Model string `json:"model"`
	Shard int    `json:"shard"`
}

func waitJob(t *testing.T, j *Jobs, id int64) *JobInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		info, err := j.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Finished() {
			return info
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %d did not finish", id)
	return nil
}

func TestJobs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		queue := uniqueName("q")
		j, err := s.NewJobs(JobsConfig{Queue: queue, Workers: 2, PollInterval: 50 * time.Millisecond, RetryDelay: 10 * time.Millisecond, MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		ran := map[int]int{}
		if err := j.Handle("train", func(ctx context.Context, job Job) error {
			var a trainArgs
			if err := json.Unmarshal(job.Args, &a); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			ran[a.Shard]++
			if a.Shard == 1 && job.Attempt == 1 {
				return errors.New("worker lost the GPU") // retried
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := j.Handle("train", func(context.Context, Job) error { return nil }); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate handler: %v", err)
		}
		if err := j.Handle("fail", func(context.Context, Job) error { return errors.New("always") }); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for k := range 4 {
			id, err := j.Enqueue(ctx, "train", trainArgs{Model: "m", Shard: k})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		failID, _ := j.Enqueue(ctx, "fail", nil)
		unknownID, _ := j.Enqueue(ctx, "nobody", nil)
		if err := j.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer j.Stop(ctx)
		for k, id := range ids {
			info := waitJob(t, j, id)
			if info.State != "completed" || info.Kind != "train" {
				t.Errorf("job %d: %+v", k, info)
			}
			var a trainArgs
			if json.Unmarshal(info.Args, &a); a.Shard != k {
				t.Errorf("job %d args %s", k, info.Args)
			}
		}
		mu.Lock()
		if ran[0] != 1 || ran[1] != 2 || ran[2] != 1 || ran[3] != 1 {
			t.Errorf("runs per shard: %v", ran)
		}
		mu.Unlock()
		if info := waitJob(t, j, failID); info.State != "discarded" || info.Attempt != 3 || len(info.Errors) != 3 {
			t.Errorf("failing job: %+v", info)
		}
		if info := waitJob(t, j, unknownID); info.State != "cancelled" {
			t.Errorf("job of unknown kind: %+v", info)
		}
		if _, err := j.Get(ctx, 1<<40); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(unknown) = %v", err)
		}
	})
}

// TestJobsListenPostgres checks that on PostgreSQL a worker starts a job queued by another
// process when it is queued, through River's LISTEN/NOTIFY, instead of at its next poll: the
// worker here polls once an hour, so only a notification can start the jobs queued after its
// first fetch.
func TestJobsListenPostgres(t *testing.T) {
	base := testDatabaseURL()
	if base == "" {
		t.Skip("S3T_TEST_DATABASE_URL not set")
	}
	ctx := context.Background()
	dsn := freshSchema(t, base)
	worker, enqueuer := openDSN(t, dsn), openDSN(t, dsn) // two processes' stores
	queue := uniqueName("q")
	j, err := worker.NewJobs(JobsConfig{Queue: queue, Workers: 1, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan int, 64)
	if err := j.Handle("train", func(_ context.Context, job Job) error {
		var a trainArgs
		if err := json.Unmarshal(job.Args, &a); err != nil {
			return err
		}
		ran <- a.Shard
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	q, err := enqueuer.NewJobs(JobsConfig{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "train", trainArgs{Model: "m", Shard: 0}); err != nil {
		t.Fatal(err)
	}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer j.Stop(ctx)
	select {
	case <-ran: // the worker's first fetch at start
	case <-time.After(20 * time.Second):
		t.Fatal("the job queued before the worker started did not run")
	}
	// Let the fetch that follows a finished job pass, so that only a notification can start
	// the next one; the listener connects in the background: queue jobs until one runs.
	time.Sleep(time.Second)
	deadline := time.After(30 * time.Second)
	for k := 1; ; k++ {
		if _, err := q.Enqueue(ctx, "train", trainArgs{Model: "m", Shard: k}); err != nil {
			t.Fatal(err)
		}
		select {
		case shard := <-ran:
			t.Logf("job %d started by a notification (%d queued after the first fetch)", shard, k)
			return
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatal("no job queued after the worker's first fetch started: the worker does not listen for new jobs")
		}
	}
}

// TestJobsStopGracefully checks how running jobs end: the context Start was given ending does
// not interrupt them (for River that would be the abrupt stop, and a SIGTERM interrupted every
// training job at once); Stop lets them finish until its context ends, then cancels them; and a
// job that snoozes when interrupted keeps its attempts.
func TestJobsStopGracefully(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		j, err := s.NewJobs(JobsConfig{Queue: uniqueName("q"), Workers: 2, PollInterval: 20 * time.Millisecond, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		started, release := make(chan string, 2), make(chan struct{})
		interrupted := make(chan time.Time, 2)
		if err := j.Handle("finishes", func(ctx context.Context, _ Job) error {
			started <- "finishes"
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				interrupted <- time.Now()
				return ctx.Err()
			}
		}); err != nil {
			t.Fatal(err)
		}
		if err := j.Handle("runs-on", func(ctx context.Context, _ Job) error {
			started <- "runs-on"
			<-ctx.Done()
			interrupted <- time.Now()
			return Snooze(time.Second)
		}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		fin, _ := j.Enqueue(ctx, "finishes", nil)
		runsOn, _ := j.Enqueue(ctx, "runs-on", nil)
		if err := j.Start(ctx); err != nil {
			t.Fatal(err)
		}
		<-started
		<-started
		cancel() // as a signal ends the server's context
		select {
		case <-interrupted:
			t.Fatal("the end of Start's context interrupted a running job")
		case <-time.After(200 * time.Millisecond):
		}
		grace := 300 * time.Millisecond
		go func() { time.Sleep(grace / 3); close(release) }() // "finishes" ends within the grace period
		sctx, scancel := context.WithTimeout(context.Background(), grace)
		defer scancel()
		stopAt := time.Now()
		if err := j.Stop(sctx); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-interrupted:
			if d := at.Sub(stopAt); d < grace*9/10 {
				t.Errorf("a job was interrupted %v after Stop, before its grace period of %v", d, grace)
			}
		default:
			t.Fatal("Stop returned before interrupting the job that runs on")
		}
		info, err := j.Get(context.Background(), fin)
		if err != nil || info.State != "completed" {
			t.Errorf("the job that finished within the grace period: %+v, %v", info, err)
		}
		// Interrupted, it snoozed: waiting to run again (River keeps a short snooze "available"
		// with its time ahead), not discarded though it has only one attempt, and not counted
		// as one.
		info, err = j.Get(context.Background(), runsOn)
		if err != nil || info.Finished() || info.Attempt != 0 {
			t.Errorf("the interrupted job that snoozed: %+v, %v; want it waiting, attempt 0", info, err)
		}
	})
}
