package plugins_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// envServe names the plugin this test binary serves when a host starts it; without it (an
// installed copy started by a Manager) it serves selector.test.
const envServe = "S3T_PLUGINS_TEST_SERVE"

// The seeds that make selector.test misbehave.
const (
	seedSlow  = 1000 // sleeps for a minute
	seedExit  = 1001 // exits the process
	seedPanic = 1002 // panics
	seedPrint = 1003 // prints plain lines to stderr (see stderrLines)
	seedSleep = 1004 // answers after a second
	seedLast  = 1005 // prints an unfinished line to os.Stderr, then exits
)

// The plain lines selector.test prints for seedPrint, and the plugins that fail to start.
const (
	lineOSStderr   = "plain line on os.Stderr"
	lineFD2        = "plain line on file descriptor 2"
	lineTagged     = "[DEBUG] tagged line on file descriptor 2"
	lineExitReason = "config file /etc/acme.conf missing, exiting"
	lineHang       = "waiting for the license server..."
	lineLast       = "last words without a newline"
)

// TestMain serves a plugin when a host started this binary (the handshake cookie is set):
// `<test binary> plugin-run NAME` or $S3T_PLUGINS_TEST_SERVE names a built-in or a test plugin.
// Otherwise it runs the tests.
func TestMain(m *testing.M) {
	if os.Getenv(sdk.Handshake.MagicCookieKey) == sdk.Handshake.MagicCookieValue {
		name := os.Getenv(envServe)
		if len(os.Args) == 3 && os.Args[1] == "plugin-run" {
			name = os.Args[2]
		}
		serve(name)
		os.Exit(0)
	}
	if os.Getenv(envHost) == "1" { // (its plugin inherits the variable, and has the cookie)
		host()
	}
	os.Exit(m.Run())
}

// envHost makes this test binary a plugin host (see host).
const envHost = "S3T_PLUGINS_TEST_HOST"

// host starts selector.test out of process, prints its process id and waits to be killed.
func host() {
	exe, err := os.Executable()
	if err != nil {
		os.Exit(2)
	}
	sum, err := plugins.FileSHA256(exe)
	if err != nil {
		os.Exit(2)
	}
	cl := plugins.NewClient("selector.test", plugins.Command{Path: exe, Env: []string{envServe + "=selector.test"}}, sum)
	if _, err := cl.Info(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(cl.Pid())
	select {}
}

func serve(name string) {
	switch name {
	case "", "selector.test":
		sdk.Serve(&sdk.Plugin{Name: "selector.test", Version: "0.0.1", Selector: testSelector{}})
	case "exit-at-start": // a plugin missing its configuration
		fmt.Fprintln(os.Stderr, lineExitReason)
		os.Exit(3)
	case "hang-at-start":
		fmt.Fprintln(os.Stderr, lineHang)
		time.Sleep(time.Minute)
	case "noisy-exit": // many lines, then exits
		for i := range 1000 {
			fmt.Fprintf(os.Stderr, "noise line %d\n", i)
		}
		os.Exit(4)
	case "invalid-name": // the SDK refuses it before any handshake
		sdk.Serve(&sdk.Plugin{Name: "ia3", Version: "0.0.1", Selector: testSelector{}})
	default:
		if err := plugins.ServeBuiltin(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// testSelector is cyclic, except for the seeds above.
type testSelector struct{}

func (testSelector) Select(ctx context.Context, req *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	slog.Info("test selector called", "seed", req.Seed)
	switch req.Seed {
	case seedSlow:
		select {
		case <-time.After(time.Minute):
		case <-ctx.Done():
			// A well-behaved plugin stops; this one keeps the process busy to look hung.
			time.Sleep(time.Minute)
		}
	case seedExit:
		os.Exit(3)
	case seedPanic:
		panic("test selector asked to panic")
	case seedLast:
		fmt.Fprint(os.Stderr, lineLast)
		time.Sleep(200 * time.Millisecond)
		os.Exit(5)
	case seedSleep:
		time.Sleep(time.Second)
	case seedPrint:
		fmt.Fprintln(os.Stderr, lineOSStderr) // (go-plugin's stream of os.Stderr)
		syscall.Write(2, []byte(lineFD2+"\n"+lineTagged+"\n"))
	}
	return unlearning.Cyclic{}.Select(ctx, req)
}

// self returns the command that starts this test binary as the plugin called name.
func self(t testing.TB, name string) plugins.Command {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return plugins.Command{Path: exe, Env: []string{envServe + "=" + name}}
}

// selfSum returns the SHA-256 of this test binary.
func selfSum(t testing.TB) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := plugins.FileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// quietLogger drops everything below warnings.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
