package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
)

// TestDeleteIDsFrom: s3t delete --ids-from takes ids from a file of lines or from the JSON of
// s3t models deletions (a restore's replay of the receipts kept), in batches of up to
// api.MaxDeleteBatch; --replay counts gone and not found as erased (exit 0), where the plain
// form exits 1 for them; receipts of another model are refused.
func TestDeleteIDsFrom(t *testing.T) {
	p := startServeProc(t, filepath.Join(t.TempDir(), "data"), "--train-workers", "0")
	outcomeModel(t, p.cl, 2, 2, 6)
	url := "http://" + p.addr
	dir := t.TempDir()
	results := func(t *testing.T, out string) map[string]string {
		t.Helper()
		var res api.DeleteSamplesResponse
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		st := map[string]string{}
		for _, r := range res.Results {
			st[r.ID] = r.Status
		}
		return st
	}
	if _, stderr, code := run(t, "delete", "m", "s0", "s1", "--url", url); code != 0 {
		t.Fatalf("delete s0 s1: exit %d: %s", code, stderr)
	}
	out, stderr, code := run(t, "models", "deletions", "m", "--url", url)
	if code != 0 {
		t.Fatalf("models deletions: exit %d: %s", code, stderr)
	}
	receipts := filepath.Join(dir, "receipts.json")
	if err := os.WriteFile(receipts, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := filepath.Join(dir, "ids.txt")
	if err := os.WriteFile(lines, []byte("# kept ids\ns2\n\ns3\r\nnope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var big strings.Builder // more ids than one batch holds, and one sample
	for i := range api.MaxDeleteBatch + 1 {
		fmt.Fprintf(&big, "x%d\n", i)
	}
	big.WriteString("s4\n")
	bigFile := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(bigFile, []byte(big.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want map[string]string // statuses of some ids
	}{
		{"receipts, plain", []string{"--ids-from", receipts}, 1, map[string]string{"s0": api.DeletionGone, "s1": api.DeletionGone}},
		{"receipts, replayed", []string{"--ids-from", receipts, "--replay"}, 0, map[string]string{"s0": api.DeletionGone, "s1": api.DeletionGone}},
		{"lines and an argument", []string{"s5", "--ids-from", lines}, 1,
			map[string]string{"s5": api.DeletionDeleted, "s2": api.DeletionDeleted, "s3": api.DeletionDeleted, "nope": api.DeletionNotFound}},
		{"lines, replayed", []string{"--ids-from", lines, "--replay"}, 0, map[string]string{"s2": api.DeletionGone, "nope": api.DeletionNotFound}},
		{"two batches", []string{"--ids-from", bigFile, "--replay"}, 0, map[string]string{"x0": api.DeletionNotFound, "x10000": api.DeletionNotFound, "s4": api.DeletionDeleted}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := run(t, append([]string{"delete", "m", "--url", url}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, stderr)
			}
			got := results(t, out)
			for id, want := range tt.want {
				if got[id] != want {
					t.Errorf("%s: %q, want %q", id, got[id], want)
				}
			}
		})
	}
	// Receipts of another model: refused before anything is deleted.
	other := strings.ReplaceAll(out, `"model": "m"`, `"model": "other"`)
	if other == out {
		t.Fatalf("no model field to rewrite in %s", out)
	}
	otherFile := filepath.Join(dir, "other.json")
	if err := os.WriteFile(otherFile, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run(t, "delete", "m", "--url", url, "--ids-from", otherFile); code != 2 || !strings.Contains(stderr, `is of model "other", not "m"`) {
		t.Errorf("receipts of another model: exit %d, stderr %q; want exit 2 naming the model", code, stderr)
	}
	if _, stderr, code := run(t, "delete", "m", "--url", url); code != 2 || !strings.Contains(stderr, "requires at least 2 arg(s)") {
		t.Errorf("no id at all: exit %d, stderr %q", code, stderr)
	}
}

// TestRestoreThenReplay follows the README's restore: a backup of the data directory taken
// before a deletion brings the sample back when restored, and s3t delete --ids-from the kept
// receipts --replay erases it again before the server is opened to anyone.
func TestRestoreThenReplay(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	p := startServeProc(t, data, "--train-workers", "0")
	outcomeModel(t, p.cl, 2, 2, 6)
	p.stop(t)
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(data)); err != nil {
		t.Fatal(err)
	}

	p = startServeProc(t, data, "--train-workers", "0")
	url := "http://" + p.addr
	if _, stderr, code := run(t, "delete", "m", "s0", "s3", "--url", url); code != 0 {
		t.Fatalf("delete: exit %d: %s", code, stderr)
	}
	out, stderr, code := run(t, "models", "deletions", "m", "--url", url)
	if code != 0 {
		t.Fatalf("models deletions: exit %d: %s", code, stderr)
	}
	receipts := filepath.Join(t.TempDir(), "receipts.json")
	if err := os.WriteFile(receipts, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	// The restore: the backup in place of the data directory.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(data, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	p = startServeProc(t, data, "--train-workers", "0")
	url = "http://" + p.addr
	for _, id := range []string{"s0", "s3"} {
		if _, err := p.cl.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: id}); err != nil {
			t.Fatalf("%s after the restore: %v; want it back (the backup holds it)", id, err)
		}
	}
	if _, stderr, code := run(t, "delete", "m", "--url", url, "--ids-from", receipts, "--replay"); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	for _, id := range []string{"s0", "s3"} {
		_, err := p.cl.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: id})
		if e := wantGone(t, err); e.Receipt == nil || e.Receipt.SampleID != id {
			t.Errorf("%s after the replay: %+v, want 410 with its new receipt", id, e)
		}
	}
	p.stop(t)
}

// wantGone checks that err is the API's 410 for a deleted sample and returns it.
func wantGone(t *testing.T, err error) *api.Error {
	t.Helper()
	e, ok := err.(*api.Error)
	if !ok || e.Status != http.StatusGone {
		t.Fatalf("error %v, want 410 gone", err)
	}
	return e
}
