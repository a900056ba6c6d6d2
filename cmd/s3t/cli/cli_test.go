package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestSequencesJSON(t *testing.T) {
	out, stderr, code := run(t, "sequences", "--slices", "4", "--budget", "2", "--selector", "cyclic", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Sequences [][]int `json:"sequences"`
		Diversity float64 `json:"diversity"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if want := [][]int{{0, 1, 2, 3}, {3, 0, 1, 2}}; !reflect.DeepEqual(got.Sequences, want) {
		t.Errorf("sequences %v, want %v", got.Sequences, want)
	}
	if got.Diversity != 4 {
		t.Errorf("diversity %v", got.Diversity)
	}
}

func TestSimulateJSON(t *testing.T) {
	out, stderr, code := run(t, "simulate", "--shards", "5", "--slices", "4", "--budget", "4", "--runs", "20000", "--seed", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"deletion_rate", "ci95", "closed_form", "sisa_closed_form", "ratio_vs_sisa"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if cf := got["closed_form"].(float64); math.Abs(cf-71.95) > 0.01 {
		t.Errorf("closed form %v, want 71.95", cf)
	}
	if r := got["deletion_rate"].(float64); math.Abs(r-71.95)/71.95 > 0.02 {
		t.Errorf("deletion rate %v far from 71.95", r)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{"sequences", "--slices", "3", "--budget", "7"},
		{"sequences", "--selector", "nope"},
		{"sequences", "--prior", "0.5,x"},
		{"simulate", "--shards", "0"},
		{"simulate", "--no-such-flag"},
		{"help", "bogus"},                           // printed the root's help, exit 0
		{"models", "get", ""},                       // an empty name reached the server as another route
		{"delete", "m", ""},                         // the same for an empty sample id
		{"models", "list", "--url", "http://"},      // no host: a network error, exit 1
		{"models", "list", "--url", "http:///v1/x"}, // the same
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, stderr, code := run(t, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, stderr)
			}
			if !strings.HasPrefix(stderr, "s3t: ") {
				t.Errorf("stderr %q", stderr)
			}
		})
	}
}

func TestHelpTopics(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "serve"}, {"help", "models", "train"}} {
		out, stderr, code := run(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d, %q %q", args, code, out, stderr)
		}
	}
}

func TestHelpExplainsFlags(t *testing.T) {
	for _, cmd := range []string{"sequences", "simulate", "demo"} {
		out, _, code := run(t, cmd, "--help")
		if code != 0 || !strings.Contains(out, "Flags:") {
			t.Errorf("%s --help: exit %d, %q", cmd, code, out)
		}
	}
}

func TestDemoPrintsTable(t *testing.T) {
	out, stderr, code := run(t, "demo", "rates", "--runs", "2000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"closed form", "SISA", "retention"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestDemoSmall runs `s3t demo` end to end at a small size: this test binary serves as
// `s3t serve` (S3T_TEST_AS_CLI); the demo trains, predicts, deletes until a prefix is cut, and
// stops the server cleanly.
func TestDemoSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and trains a model")
	}
	if _, err := loadTrainData("mnist", 100, 400); err != nil {
		t.Skipf("MNIST is not installed (make deps): %v", err)
	}
	t.Setenv("S3T_TEST_AS_CLI", "1")
	out, stderr, code := run(t, "demo", "--train", "400", "--test", "100", "--epochs", "1", "--deletions", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	for _, want := range []string{"trained in", "accuracy", "seq 0: 4->3", "unlearning status", "server stopped cleanly"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestLogFlags: --log-format and --log-level (S3T_LOG_FORMAT, S3T_LOG_LEVEL) shape every
// command's log records: JSON lines a log pipeline can parse, or text, from the level given;
// a value they do not know is a usage error.
func TestLogFlags(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags []string
		env   map[string]string
		code  int
		check func(t *testing.T, stderr string)
	}{
		{"json", []string{"--log-format", "json"}, nil, 0, func(t *testing.T, stderr string) {
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			for _, l := range lines {
				var rec struct{ Level, Msg string }
				if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
					t.Errorf("log line %q is not a JSON record (%v)", l, err)
				}
			}
			if !strings.Contains(stderr, `"msg":"store migration applied"`) {
				t.Errorf("no migration record in %q", stderr)
			}
			// River's migration records carry a duration: as text ("105µs"), not nanoseconds.
			if !regexp.MustCompile(`"duration":"[0-9.]+[µnm]?s"`).MatchString(stderr) {
				t.Errorf("no duration written as a Go duration in %q", stderr)
			}
		}},
		{"json: the error that ends the command is a record too", []string{"--log-format", "json", "--database-url", "mysql://x"}, nil, 2, func(t *testing.T, stderr string) {
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			var rec struct {
				Level, Msg, Err string
				ExitCode        int `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
				t.Fatalf("last line %q is not a JSON record (%v)", lines[len(lines)-1], err)
			}
			if rec.Level != "ERROR" || rec.ExitCode != 2 || !strings.Contains(rec.Err, "--database-url must be a postgres://") {
				t.Errorf("last record %+v, want the usage error at level ERROR with exit_code 2", rec)
			}
		}},
		{"json from the environment, any case", nil, map[string]string{"S3T_LOG_FORMAT": "JSON"}, 0, func(t *testing.T, stderr string) {
			if !strings.HasPrefix(stderr, "{") {
				t.Errorf("stderr %q, want JSON records", stderr)
			}
		}},
		{"text", nil, nil, 0, func(t *testing.T, stderr string) {
			if !strings.Contains(stderr, `level=INFO msg="store migration applied"`) {
				t.Errorf("stderr %q, want text records", stderr)
			}
		}},
		{"warn and above", []string{"--log-level", "warn"}, nil, 0, func(t *testing.T, stderr string) {
			if strings.Contains(stderr, "migration") {
				t.Errorf("info records logged at --log-level warn: %q", stderr)
			}
		}},
		{"unknown format", []string{"--log-format", "logfmt"}, nil, 2, func(t *testing.T, stderr string) {
			if !strings.Contains(stderr, `--log-format (or S3T_LOG_FORMAT) "logfmt": want text or json`) {
				t.Errorf("stderr %q", stderr)
			}
		}},
		{"unknown level", nil, map[string]string{"S3T_LOG_LEVEL": "verbose"}, 2, func(t *testing.T, stderr string) {
			if !strings.Contains(stderr, `S3T_LOG_LEVEL) "verbose": want debug, info, warn or error`) {
				t.Errorf("stderr %q", stderr)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"migrate", "--data", filepath.Join(t.TempDir(), "data")}, tt.flags...)
			_, stderr, code := run(t, args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, stderr)
			}
			tt.check(t, stderr)
		})
	}
}
