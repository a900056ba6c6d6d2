package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/s3t-dev/s3t/api"
)

// serveChild is an `s3t serve` child process (the same binary): the demo's and the benches'
// server, and the process tests'.
type serveChild struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited; err is then its Wait result
	err  error
	// addr is where it listens; cl is a client of it.
	addr string
	cl   *api.Client
}

// startServeChild starts `s3t serve --data data args...` with its output going to logw, on
// a port it picks itself (--addr 127.0.0.1:0 unless args name another --addr; --addr-file tells
// which, with no race with other processes for a free port), and waits until it answers.
func startServeChild(ctx context.Context, data string, logw io.Writer, args ...string) (*serveChild, error) {
	return startServeChildOn(ctx, "", data, logw, args...)
}

// startServeChildOn is startServeChild with the child held to the CPUs of the list cpus
// (taskset -c syntax, as "0-7" or "0,2,4-6"; empty: no restriction), set before it execs, so
// that the Go runtime sizes GOMAXPROCS to them as it starts.
func startServeChildOn(ctx context.Context, cpus, data string, logw io.Writer, args ...string) (*serveChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startServeExe(ctx, exe, cpus, data, logw, args...)
}

// startServeExe is startServeChildOn of the executable exe.
func startServeExe(ctx context.Context, exe, cpus, data string, logw io.Writer, args ...string) (*serveChild, error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	addrFile := filepath.Join(data, "serve.addr")
	os.Remove(addrFile)
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--addr-file", addrFile, "--data", data}, args...)
	cmd := exec.Command(exe, all...)
	if cpus != "" {
		if err := checkCPUList(cpus); err != nil {
			return nil, err
		}
		taskset, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("holding s3t serve to CPUs %s: %w (taskset is in Debian's util-linux)", cpus, err)
		}
		cmd = exec.Command(taskset, append([]string{"-c", cpus, exe}, all...)...) // taskset execs exe: the same pid
	}
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.Env = append(os.Environ(), "S3T_KEYS=")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start s3t serve: %w", err)
	}
	p := &serveChild{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	var err error
	if p.addr, err = waitAddrFile(addrFile, p.done, 60*time.Second); err != nil {
		p.kill()
		return nil, err
	}
	if p.cl, err = api.NewClient("http://" + p.addr); err != nil {
		p.kill()
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err = p.cl.Health(ctx, &api.HealthRequest{}); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("s3t serve exited: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("s3t serve not up after 30 s: %w", err)
		}
	}
}

// stop shuts the child down gracefully (SIGINT), killing it after 30 s; it returns how the
// process ended.
func (p *serveChild) stop() error {
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		p.kill()
		return errors.New("s3t serve did not stop within 30 s; killed")
	}
}

// kill sends SIGKILL (no shutdown code runs) and waits for the process to be gone.
func (p *serveChild) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

var cpuList = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// checkCPUList checks that s is a CPU list in taskset -c syntax.
func checkCPUList(s string) error {
	if !cpuList.MatchString(s) {
		return fmt.Errorf("CPU list %q: want numbers and ranges separated by commas, as 0-7 or 0,2,4-6", s)
	}
	return nil
}

// waitAddrFile waits until a server started with --addr-file path has written its address, or
// has exited (done closes), for at most timeout.
func waitAddrFile(path string, done <-chan struct{}, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-done:
			return "", errors.New("s3t serve exited before it listened")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("s3t serve did not listen within %s", timeout)
		}
	}
}

// writeFileAtomic writes b to path through a temporary file and a rename, so a reader never
// sees a partial file.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
