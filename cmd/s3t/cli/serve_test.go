package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// TestServeAndClientCommands runs `s3t serve` in-process on a free loopback port, creates a
// model through the api client, and drives `s3t models list` and `s3t delete`.
func TestServeAndClientCommands(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	data := filepath.Join(t.TempDir(), "data")
	go func() {
		var out, errb strings.Builder
		done <- Execute(ctx, []string{"serve", "--addr", addr, "--data", data}, &out, &errb)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	}()
	url := "http://" + addr
	cl, err := api.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := cl.Health(ctx, &api.HealthRequest{}); err == nil {
			break
		} else if i == 100 {
			t.Fatalf("server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 2, Slices: 2, Sequences: 2}}
	if _, err := cl.CreateModel(ctx, &api.CreateModelRequest{Name: "demo", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "demo", Samples: []api.Sample{
		{ID: "x1", Input: json.RawMessage(pixelsJSON(1)), Label: "a"}, {ID: "x2", Input: json.RawMessage(pixelsJSON(0)), Label: "b"}}}); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := run(t, "models", "list", "--url", url)
	if code != 0 || !strings.Contains(out, "demo") || !strings.Contains(out, "2x2") {
		t.Fatalf("models list: exit %d, %q %q", code, out, stderr)
	}
	// Two samples leave most (shard, slice) units empty: training is refused, saying why.
	out, stderr, code = run(t, "models", "train", "demo", "--url", url)
	if code != 1 || !strings.Contains(stderr, "holds no samples") {
		t.Fatalf("models train: exit %d, %q %q", code, out, stderr)
	}
	// No job queued or running: the status lists none, following it ends at once, and a cancel
	// cancels nothing.
	out, stderr, code = run(t, "models", "training", "demo", "--url", url)
	var ts api.TrainingStatus
	if code != 0 || json.Unmarshal([]byte(out), &ts) != nil || ts.Model != "demo" || len(ts.Jobs) != 0 || !ts.Done {
		t.Fatalf("models training: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = run(t, "models", "training", "demo", "--watch", "--url", url)
	if code != 0 || !strings.Contains(out, "no training of") {
		t.Fatalf("models training --watch: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = run(t, "models", "cancel", "demo", "--url", url)
	if code != 0 || !strings.Contains(out, `"model": "demo"`) {
		t.Fatalf("models cancel: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = run(t, "models", "unlearning", "demo", "--url", url)
	if code != 0 || !strings.Contains(out, `"live_shards"`) {
		t.Fatalf("models unlearning: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = run(t, "delete", "demo", "x1", "--url", url)
	var rc api.Receipt
	if code != 0 || json.Unmarshal([]byte(out), &rc) != nil || rc.SampleID != "x1" {
		t.Fatalf("delete: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = run(t, "delete", "demo", "x1", "--url", url)
	if code != 1 || !strings.Contains(out, rc.ID) || !strings.Contains(stderr, "gone") {
		t.Fatalf("second delete: exit %d, %q %q; want exit 1 with the earlier receipt", code, out, stderr)
	}
	// The receipts read back: the model's list, and one by its id.
	out, stderr, code = run(t, "models", "deletions", "demo", "--url", url)
	var rl api.ListReceiptsResponse
	if code != 0 || json.Unmarshal([]byte(out), &rl) != nil || len(rl.Receipts) != 1 || rl.Receipts[0].ID != rc.ID || rl.Receipts[0].SampleID != "x1" {
		t.Fatalf("models deletions: exit %d, %q %q; want the one receipt", code, out, stderr)
	}
	out, stderr, code = run(t, "models", "receipt", rc.ID, "--url", url)
	var one api.Receipt
	if code != 0 || json.Unmarshal([]byte(out), &one) != nil || one.ID != rc.ID || one.LedgerVersion != rc.LedgerVersion {
		t.Fatalf("models receipt: exit %d, %q %q; want receipt %s", code, out, stderr, rc.ID)
	}
	if _, stderr, code = run(t, "models", "receipt", "0000", "--url", url); code != 1 || !strings.Contains(stderr, "not_found") {
		t.Fatalf("models receipt of an unknown id: exit %d, %q; want exit 1, not found", code, stderr)
	}
	// An id given twice is deleted once, and not reported deleted earlier by this very call;
	// several ids give the results, even all the same.
	out, stderr, code = run(t, "delete", "demo", "x2", "x2", "--url", url)
	var res api.DeleteSamplesResponse
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Results) != 1 || res.Results[0].ID != "x2" || res.Results[0].Receipt == nil {
		t.Fatalf("delete x2 x2: exit %d, %q %q", code, out, stderr)
	}
}

// TestKeysNew checks that `s3t keys new` prints a secret (on stderr) and a keys-file line (on
// stdout) that LoadKeys accepts with that secret's hash: `s3t keys new ... >> keys` stored the
// secret in the keys file, and the server refused the file.
func TestKeysNew(t *testing.T) {
	out, stderr, code := run(t, "keys", "new", "ops", "infer,delete")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	secret, ok := strings.CutPrefix(strings.TrimSpace(stderr), "secret: ")
	if !ok || strings.Contains(out, secret) || strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout %q, stderr %q", out, stderr)
	}
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := server.LoadKeys(path)
	if err != nil || len(keys) != 1 || keys[0].Hash != sha256.Sum256([]byte(secret)) || len(keys[0].Scopes) != 2 {
		t.Fatalf("LoadKeys = %+v, %v", keys, err)
	}
	if _, _, code := run(t, "keys", "new", "ops", "root"); code != 2 {
		t.Fatalf("unknown scope: exit %d, want 2", code)
	}
	// Scopes written with a space make a line the keys file reads: it used to hold "train,
	// infer" as given, a fourth field the server refused at start.
	out, _, code = run(t, "keys", "new", "sp", "train, infer")
	if err := os.WriteFile(path, []byte(out), 0o600); code != 0 || err != nil {
		t.Fatalf("keys new sp: exit %d, %v", code, err)
	}
	if keys, err := server.LoadKeys(path); err != nil || len(keys) != 1 || len(keys[0].Scopes) != 2 {
		t.Fatalf("keys new sp %q: LoadKeys = %+v, %v", out, keys, err)
	}
	// A name the keys file would refuse (or skip as a comment) is a usage error.
	for _, name := range []string{"", "two words", "#ops", "tab\tname"} {
		if _, _, code := run(t, "keys", "new", name, "admin"); code != 2 {
			t.Errorf("keys new %q: exit %d, want 2", name, code)
		}
	}
}

// TestTrainWorkersEnvChecked: a S3T_TRAIN_WORKERS that is not a number, or a --train-workers
// or S3T_TRAIN_WORKERS under the least a command takes (0 for serve, a serving-only replica; 1
// for worker), stops s3t serve and s3t worker with a usage error that names the least (a negative
// count used to make serve a serving-only replica, silently, and worker said "want 0 or more" of
// -1 but refused 0); a valid --train-workers overrides a bad S3T_TRAIN_WORKERS.
func TestTrainWorkersEnvChecked(t *testing.T) {
	serve := func(t *testing.T) []string { return []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"} }
	worker := func(t *testing.T) []string {
		return []string{"worker", "--database-url", "postgres://127.0.0.1:1/none", "--blob-url", "file://" + t.TempDir(), "--work-dir", t.TempDir()}
	}
	for _, tt := range []struct {
		env, flag, want string
		cmds            []func(*testing.T) []string
	}{
		{env: "two", want: `S3T_TRAIN_WORKERS="two"`, cmds: []func(*testing.T) []string{serve, worker}},
		{env: "-1", want: "is -1; want 0 or more", cmds: []func(*testing.T) []string{serve}},
		{flag: "-2", want: "is -2; want 0 or more", cmds: []func(*testing.T) []string{serve}},
		{env: "-1", want: "is -1; want 1 or more", cmds: []func(*testing.T) []string{worker}},
		{env: "0", want: "is 0; want 1 or more", cmds: []func(*testing.T) []string{worker}},
		{env: "3", flag: "0", want: "is 0; want 1 or more", cmds: []func(*testing.T) []string{worker}},
	} {
		t.Setenv("S3T_TRAIN_WORKERS", tt.env)
		for _, cmd := range tt.cmds {
			args := cmd(t)
			if tt.flag != "" {
				args = append(args, "--train-workers", tt.flag)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var out, errb bytes.Buffer
			code := Execute(ctx, args, &out, &errb)
			cancel()
			if code != 2 || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("%s with S3T_TRAIN_WORKERS=%q --train-workers %q: exit %d, stderr %q; want exit 2 and %q",
					args[0], tt.env, tt.flag, code, errb.String(), tt.want)
			}
		}
	}
}

// TestVersionFlag: an operator could not tell which build ran (an operator audit): s3t
// --version names it, as the server's first log line and the KServe v2 server metadata do.
func TestVersionFlag(t *testing.T) {
	out, stderr, code := run(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "s3t version ") || strings.TrimSpace(strings.TrimPrefix(out, "s3t version ")) == "" {
		t.Fatalf("s3t --version: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

// TestHelpHidesSecrets: --help does not print the API key or the database URL (with its
// password) that the environment sets as flags' defaults (a CLI audit found both there), while
// the flags still take them.
func TestHelpHidesSecrets(t *testing.T) {
	const key, dsn = "s3t_topsecretvalue", "postgres://s3t:hunter2pw@127.0.0.1:1/s3t"
	t.Setenv("S3T_API_KEY", key)
	t.Setenv("S3T_DATABASE_URL", dsn)
	t.Setenv("S3T_BLOB_URL", "s3://bucket?secret=blobsecret")
	for _, args := range [][]string{
		{"models", "--help"}, {"models", "list", "--help"}, {"delete", "--help"}, {"serve", "--help"},
		{"worker", "--help"}, {"migrate", "--help"}, {"bench", "cluster", "--help"},
	} {
		out, stderr, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		for _, secret := range []string{"topsecret", "hunter2pw", "blobsecret"} {
			if strings.Contains(out+stderr, secret) {
				t.Errorf("%v shows %q:\n%s", args, secret, out)
			}
		}
	}
	var f clientFlags
	c := &cobra.Command{Use: "x"}
	f.register(c)
	if f.key != key {
		t.Errorf("--api-key's value %q, want S3T_API_KEY's", f.key)
	}
}

// TestClientTimeout: a server that takes the connection and never answers fails a client
// command after --timeout, saying so (it hung until interrupted: a CLI audit).
func TestClientTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	start := time.Now()
	_, stderr, code := run(t, "models", "list", "--url", "http://"+ln.Addr().String(), "--timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "within --timeout 300ms") || time.Since(start) > 20*time.Second {
		t.Fatalf("exit %d after %s, stderr %q; want exit 1 naming --timeout", code, time.Since(start), stderr)
	}
}

// TestServeFlagsCheckedFirst: a bad --addr or a negative --predict-spin is a usage error (exit 2)
// before anything is made: a bad address used to fail with exit 1 after the data directory was
// made and migrated, and a negative spin was taken as 0.
func TestServeFlagsCheckedFirst(t *testing.T) {
	for _, tt := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--addr", "nonsense"}, "want HOST:PORT"},
		{[]string{"--addr", "127.0.0.1:0", "--predict-spin", "-1s"}, "want 0 (no polling) or more"},
		// Without keys, a non-loopback address is refused (it used to be moved to 127.0.0.1
		// with a warning: a server nobody outside could reach).
		{[]string{"--addr", "0.0.0.0:0"}, "loopback only"},
		{[]string{"--addr", ":0"}, "loopback only"},
		// A SQLite path as --database-url ran a ledger no lock guards; a sweep interval of 0
		// panicked the sweeper on PostgreSQL.
		{[]string{"--addr", "127.0.0.1:0", "--database-url", "/tmp/x.db"}, "needs a postgres:// database URL"},
		{[]string{"--addr", "127.0.0.1:0", "--sweep-every", "0s"}, "--sweep-every 0s: want more than 0"},
		// A plugin timeout of 0 or less was taken for its default.
		{[]string{"--addr", "127.0.0.1:0", "--plugin-start-timeout", "0s"}, "--plugin-start-timeout 0s: want more than 0"},
		{[]string{"--addr", "127.0.0.1:0", "--plugin-call-timeout", "-1s"}, "--plugin-call-timeout -1s: want more than 0"},
		{[]string{"--addr", "127.0.0.1:0", "--plugin-idle-timeout", "0s"}, "--plugin-idle-timeout 0s: want more than 0"},
		{[]string{"--addr", "127.0.0.1:0", "--tls-cert", "cert.pem"}, "--tls-cert and --tls-key (S3T_TLS_CERT, S3T_TLS_KEY) go together"},
		{[]string{"--addr", "127.0.0.1:0", "--tls-key", "key.pem"}, "go together"},
	} {
		data := filepath.Join(t.TempDir(), "data")
		_, stderr, code := run(t, append([]string{"serve", "--data", data}, tt.flags...)...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want exit 2 and %q", tt.flags, code, stderr, tt.want)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("serve %v made its data directory (%v)", tt.flags, err)
		}
	}
}

// TestUnauthorizedHint: a 401 from the server tells the CLI user how to give a key.
func TestUnauthorizedHint(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"missing API key (Authorization: Bearer KEY)"}}`))
	}))
	defer ts.Close()
	_, stderr, code := run(t, "models", "list", "--url", ts.URL)
	if code != 1 || !strings.Contains(stderr, "--api-key or S3T_API_KEY") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and the hint", code, stderr)
	}
}

// TestWorkerIntervalsChecked: a --sweep-every or --poll-interval of 0 is a usage error of s3t
// worker (the sweeper's ticker panicked, exit 2 like a usage error but with a stack).
func TestWorkerIntervalsChecked(t *testing.T) {
	for _, flag := range []string{"--sweep-every", "--poll-interval"} {
		args := []string{"worker", "--database-url", "postgres://127.0.0.1:1/none", "--blob-url", "file://" + t.TempDir(),
			"--work-dir", t.TempDir(), flag, "0s"}
		_, stderr, code := run(t, args...)
		if code != 2 || !strings.Contains(stderr, "must be more than 0") {
			t.Errorf("worker %s 0s: exit %d, stderr %q; want exit 2", flag, code, stderr)
		}
	}
}

// TestFollowTrainingAgain: a follower of a training whose server shuts down (a replica's
// restart; the jobs go on on the workers) follows again rather than exit 1, and ends with the
// training's outcome.
func TestFollowTrainingAgain(t *testing.T) {
	var calls atomic.Int32
	running := `{"model":"m","jobs":[{"id":1,"shard":0,"sequence":0,"state":"running","stage":1,"stages":2,"step":1,"steps":4}],"done":false,"step":1,"steps":4}`
	done := `{"model":"m","jobs":[{"id":1,"shard":0,"sequence":0,"state":"done","stage":2,"stages":2,"step":4,"steps":4}],"done":true,"step":4,"steps":4}`
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models/m/training/events" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		switch calls.Add(1) {
		case 1: // the replica shuts down
			fmt.Fprintf(w, "event: progress\ndata: %s\n\nevent: error\ndata: {\"error\":{\"code\":\"unavailable\",\"message\":\"the server is shutting down\"}}\n\n", running)
		case 2: // not up yet
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":"unavailable","message":"the ledger does not answer"}}`)
		default:
			fmt.Fprintf(w, "event: done\ndata: %s\n\n", done)
		}
	}))
	defer ts.Close()
	out, stderr, code := run(t, "models", "training", "m", "--watch", "--url", ts.URL)
	if code != 0 || calls.Load() != 3 || !strings.Contains(out, "training done") {
		t.Fatalf("exit %d after %d connections; stdout %q, stderr %q", code, calls.Load(), out, stderr)
	}
	// A server never heard from is not followed again: a wrong --url fails at once.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	if _, _, code := run(t, "models", "training", "m", "--watch", "--url", deadURL); code != 1 {
		t.Fatalf("a server that is not there: exit %d, want 1", code)
	}
	// A refusal is not followed again.
	calls.Store(100)
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":"not_found","message":"model \"m\": not found"}}`)
	})
	if _, _, code := run(t, "models", "training", "m", "--watch", "--url", ts.URL); code != 1 || calls.Load() != 101 {
		t.Fatalf("unknown model: exit %d after %d connections, want 1 after 1", code, calls.Load()-100)
	}
}
