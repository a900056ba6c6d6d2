package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
)

// testClient returns a Client for selector.test, closed at the end of the test.
func testClient(t *testing.T, opts ...plugins.ClientOption) *plugins.Client {
	t.Helper()
	opts = append([]plugins.ClientOption{plugins.WithLogger(quietLogger())}, opts...)
	c := plugins.NewClient("selector.test", self(t, "selector.test"), selfSum(t), opts...)
	t.Cleanup(func() { c.Close() })
	return c
}

func selectSeed(c *plugins.Client, seed int64) error {
	_, err := c.Selector().Select(context.Background(), &sdk.SelectRequest{Slices: 4, Budget: 2, Seed: seed})
	return err
}

func TestClientStartsOnFirstUseAndReuses(t *testing.T) {
	c := testClient(t)
	if c.Pid() != 0 || c.Starts() != 0 {
		t.Fatalf("started before the first call: pid %d, starts %d", c.Pid(), c.Starts())
	}
	for range 3 {
		if err := selectSeed(c, 1); err != nil {
			t.Fatal(err)
		}
	}
	if c.Starts() != 1 || c.Pid() == 0 {
		t.Errorf("starts %d, pid %d: want one process, reused", c.Starts(), c.Pid())
	}
	if c.Protocol() != sdk.ProtocolVersion {
		t.Errorf("protocol %d, want %d", c.Protocol(), sdk.ProtocolVersion)
	}
	info, err := c.Info(context.Background())
	if err != nil || info.Name != "selector.test" || info.Kind != sdk.KindSelector || info.SDKVersion != sdk.Version {
		t.Errorf("Info = %+v, %v", info, err)
	}
}

// TestClientRestartsAfterCrash kills the plugin process in the middle of a call, or has it exit:
// the call fails with ErrCrashed and the plugin's name, the host carries on, and the next call
// runs in a new process.
func TestClientRestartsAfterCrash(t *testing.T) {
	tests := []struct {
		name  string
		crash func(t *testing.T, c *plugins.Client) error
	}{
		{"killed mid-call", func(t *testing.T, c *plugins.Client) error {
			pid := c.Pid()
			var wg sync.WaitGroup
			var err error
			wg.Add(1)
			go func() {
				defer wg.Done()
				err = selectSeed(c, seedSlow)
			}()
			time.Sleep(300 * time.Millisecond)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			return err
		}},
		{"exits mid-call", func(t *testing.T, c *plugins.Client) error { return selectSeed(c, seedExit) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t)
			if err := selectSeed(c, 1); err != nil {
				t.Fatal(err)
			}
			first := c.Pid()
			start := time.Now()
			err := tt.crash(t, c)
			if !errors.Is(err, plugins.ErrCrashed) || !strings.Contains(err.Error(), "plugin selector.test") {
				t.Fatalf("got %v, want ErrCrashed naming the plugin", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the crash took %v to surface", d)
			}
			t.Logf("error: %v", err)
			if err := selectSeed(c, 1); err != nil {
				t.Fatalf("the call after the crash: %v", err)
			}
			if c.Pid() == first || c.Starts() != 2 {
				t.Errorf("pid %d (was %d), starts %d: want a new process", c.Pid(), first, c.Starts())
			}
		})
	}
}

// TestClientIdleStop: a process with no call in flight for the idle timeout is stopped (after
// a call that succeeded as after one that failed), and the next call starts a new one; a call
// that runs longer than the idle timeout is never cut short; Close stops a process waiting out
// its idle timeout.
func TestClientIdleStop(t *testing.T) {
	const idle = 300 * time.Millisecond
	tests := []struct {
		name  string
		first int64 // the seed of the first call
		then  func(t *testing.T, c *plugins.Client, pid int)
	}{
		{"idle", 1, func(t *testing.T, c *plugins.Client, pid int) {
			waitGone(t, pid, 5*time.Second)
			if c.Pid() != 0 {
				t.Errorf("pid %d after the idle stop, want 0", c.Pid())
			}
			if err := selectSeed(c, 1); err != nil {
				t.Fatalf("the call after the idle stop: %v", err)
			}
			if c.Pid() == pid || c.Pid() == 0 || c.Starts() != 2 {
				t.Errorf("pid %d (was %d), starts %d: want a new process", c.Pid(), pid, c.Starts())
			}
		}},
		{"idle after a failed call", seedPanic, func(t *testing.T, c *plugins.Client, pid int) {
			waitGone(t, pid, 5*time.Second)
		}},
		{"call longer than the idle timeout", 1, func(t *testing.T, c *plugins.Client, pid int) {
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range errs {
				wg.Go(func() { errs[i] = selectSeed(c, seedSleep) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Errorf("a call in flight past the idle timeout: %v", err)
				}
			}
			if c.Starts() != 1 || !running(pid) {
				t.Errorf("starts %d, process %d running %v: want the first process, still running", c.Starts(), pid, running(pid))
			}
			waitGone(t, pid, 5*time.Second)
		}},
		{"closed", 1, func(t *testing.T, c *plugins.Client, pid int) {
			c.Close()
			if running(pid) {
				t.Errorf("process %d runs after Close", pid)
			}
			if err := selectSeed(c, 1); !errors.Is(err, plugins.ErrClosed) {
				t.Errorf("a call after Close: %v, want ErrClosed", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, plugins.WithIdleTimeout(idle))
			selectSeed(c, tt.first)
			pid := c.Pid()
			if pid == 0 || !running(pid) {
				t.Fatalf("no process after the first call (pid %d)", pid)
			}
			tt.then(t, c, pid)
		})
	}
}

// TestClientTimeout: a hanging plugin times out, is stopped, and the next call starts anew.
func TestClientTimeout(t *testing.T) {
	c := testClient(t, plugins.WithCallTimeout(500*time.Millisecond))
	if err := selectSeed(c, 1); err != nil {
		t.Fatal(err)
	}
	first := c.Pid()
	start := time.Now()
	err := selectSeed(c, seedSlow)
	if !errors.Is(err, plugins.ErrTimeout) || !strings.Contains(err.Error(), "plugin selector.test") {
		t.Fatalf("got %v, want ErrTimeout naming the plugin", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	t.Logf("error: %v", err)
	if err := selectSeed(c, 1); err != nil {
		t.Fatalf("the call after the timeout: %v", err)
	}
	if c.Pid() == first {
		t.Error("the hung process was reused")
	}
}

// TestClientPanicIsAnError: a panic in the plugin's code is an error for that call only.
func TestClientPanicIsAnError(t *testing.T) {
	c := testClient(t)
	if err := selectSeed(c, 1); err != nil {
		t.Fatal(err)
	}
	pid := c.Pid()
	err := selectSeed(c, seedPanic)
	if err == nil || errors.Is(err, plugins.ErrCrashed) || !strings.Contains(err.Error(), "panicked") ||
		!strings.Contains(err.Error(), "plugin selector.test") {
		t.Fatalf("got %v, want an ordinary error saying the plugin panicked", err)
	}
	if err := selectSeed(c, 1); err != nil || c.Pid() != pid {
		t.Errorf("after a panic: %v, pid %d (was %d): want the same process", err, c.Pid(), pid)
	}
}

// TestClientErrorsKeepSentinels: a plugin's sdk errors cross the process boundary.
func TestClientErrorsKeepSentinels(t *testing.T) {
	c := testClient(t)
	_, err := c.Selector().Select(context.Background(), &sdk.SelectRequest{Slices: 3, Budget: 7})
	if !errors.Is(err, sdk.ErrInvalidRequest) || !strings.Contains(err.Error(), "plugin selector.test: Select") {
		t.Fatalf("got %v, want sdk.ErrInvalidRequest naming the plugin and method", err)
	}
}

func TestClientKind(t *testing.T) {
	c := testClient(t)
	_, err := c.PEFT().Describe(context.Background(), &sdk.DescribeRequest{})
	if !errors.Is(err, plugins.ErrKind) {
		t.Fatalf("got %v, want ErrKind", err)
	}
}

func TestClientRefusesWrongChecksum(t *testing.T) {
	c := plugins.NewClient("selector.test", self(t, "selector.test"), make([]byte, 32), plugins.WithLogger(quietLogger()))
	defer c.Close()
	err := selectSeed(c, 1)
	if !errors.Is(err, plugins.ErrTampered) || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("got %v, want ErrTampered", err)
	}
	if c.Starts() != 1 || c.Pid() != 0 {
		t.Errorf("starts %d, pid %d: nothing may run", c.Starts(), c.Pid())
	}
}

// TestClientLogsPluginStderr: the plugin's slog records reach the host's slog with the
// plugin's name.
func TestClientLogsPluginStderr(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := testClient(t, plugins.WithLogger(logger))
	if err := selectSeed(c, 77); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(buf.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if rec["msg"] == "test selector called" && rec["plugin"] == "selector.test" && rec["level"] == "INFO" && rec["seed"] == 77.0 {
				if _, ok := rec["timestamp"]; ok {
					t.Errorf("the record has a timestamp attribute besides its time: %s", line)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of the plugin's log line in the host's log:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// records returns the JSON records logged so far.
func records(buf *syncBuffer) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// waitRecord waits for a record of the plugin selector.test whose message has msg, and returns it.
func waitRecord(t *testing.T, buf *syncBuffer, msg string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, rec := range records(buf) {
			if m, _ := rec["msg"].(string); strings.Contains(m, msg) && rec["plugin"] == "selector.test" {
				return rec
			}
		}
	}
	t.Fatalf("no record %q of the plugin in the host's log:\n%s", msg, buf.String())
	return nil
}

// TestClientLogsPlainStderr: lines a plugin prints to stderr that are not log records reach the
// host's log too, at warn level (info when tagged "[DEBUG]"), with the plugin's name: through
// os.Stderr (which go-plugin streams after the handshake) as through file descriptor 2.
func TestClientLogsPlainStderr(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := testClient(t, plugins.WithLogger(logger))
	if err := selectSeed(c, seedPrint); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ line, level string }{
		{lineOSStderr, "WARN"},
		{"plain " + lineFD2[len("plain "):], "WARN"},
		{lineTagged, "INFO"},
	} {
		if rec := waitRecord(t, &buf, tt.line); rec["msg"] != tt.line || rec["level"] != tt.level {
			t.Errorf("%q logged at %v, want %s", tt.line, rec["level"], tt.level)
		}
	}
}

// TestClientLogsUnfinishedStderrLine: a line without a newline, the last a plugin printed to
// os.Stderr before it exited, is logged once the process is stopped.
func TestClientLogsUnfinishedStderrLine(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := testClient(t, plugins.WithLogger(logger))
	if err := selectSeed(c, seedLast); !errors.Is(err, plugins.ErrCrashed) {
		t.Fatalf("got %v, want ErrCrashed", err)
	}
	if rec := waitRecord(t, &buf, lineLast); rec["msg"] != lineLast || rec["level"] != "WARN" {
		t.Errorf("logged %v", rec)
	}
}

// TestClientStartFailureQuotesStderr: a plugin that exits or hangs before its handshake fails
// with ErrStart quoting the last lines of its stderr (bounded), not go-plugin's guesses about
// architectures, and the lines are in the host's log.
func TestClientStartFailureQuotesStderr(t *testing.T) {
	tests := []struct {
		serve string
		want  []string // in the error
		not   []string // not in the error
	}{
		{"exit-at-start", []string{lineExitReason, "exit status 3", "ended before its handshake"}, []string{"architecture"}},
		{"hang-at-start", []string{lineHang, "timeout"}, nil},
		{"invalid-name", []string{`invalid plugin: name "ia3"`, "exit status 1"}, []string{"architecture"}},
		{"noisy-exit", []string{"noise line 999", "noise line 980\n", "exit status 4"}, []string{"noise line 979\n", "architecture"}},
	}
	for _, tt := range tests {
		t.Run(tt.serve, func(t *testing.T) {
			var buf syncBuffer
			logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			c := plugins.NewClient("selector.test", self(t, tt.serve), selfSum(t), plugins.WithLogger(logger),
				plugins.WithStartTimeout(2*time.Second))
			defer c.Close()
			err := selectSeed(c, 1)
			if !errors.Is(err, plugins.ErrStart) {
				t.Fatalf("got %v, want ErrStart", err)
			}
			t.Logf("error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("the error has %q", n)
				}
			}
			if len(err.Error()) > 3<<10 {
				t.Errorf("the error is %d bytes long", len(err.Error()))
			}
			if pids := children(t); len(pids) != 0 {
				t.Errorf("processes %v left running after a failed start", pids)
			}
			if rec := waitRecord(t, &buf, tt.want[0]); rec["level"] != "WARN" {
				t.Errorf("%q logged at %v, want WARN", tt.want[0], rec["level"])
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
