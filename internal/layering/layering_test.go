package layering

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/s3t-dev/s3t"

// rooms maps a dependency (module path prefix) to the project packages allowed to import it
// directly (a package path, or a prefix ending in "/...").
var rooms = map[string][]string{
	"github.com/yalue/onnxruntime_go": {"backbone/ort"},
	"github.com/gomlx/":               {"adapters/..."},
	"github.com/labstack/echo":        {"server/..."},
	"github.com/riverqueue/":          {"store/..."},
	"modernc.org/sqlite":              {"store/..."},
	"github.com/jackc/pgx":            {"store/..."},
	"gocloud.dev":                     {"store/..."},
	"github.com/hashicorp/go-plugin":  {"sdk/...", "plugins/..."},
	"google.golang.org/grpc":          {"sdk/...", "plugins/..."},
}

// pure are packages that must not reach any heavy dependency, even indirectly; the plugin
// protocol (go-plugin, gRPC) is allowed, since they use sdk types and sdk serves plugins.
var pure = []string{"unlearning", "sdk"}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func allowed(rel string, patterns []string) bool {
	for _, p := range patterns {
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if rel == base || strings.HasPrefix(rel, base+"/") {
				return true
			}
		} else if rel == p {
			return true
		}
	}
	return false
}

func TestHeavyDependenciesStayInTheirRoom(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			for dep, where := range rooms {
				if strings.HasPrefix(imp, dep) && !allowed(rel, where) {
					t.Errorf("%s imports %s; only %v may", rel, imp, where)
				}
			}
		}
	}
}

func TestPurePackagesStayPure(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, name := range pure {
			if rel != name {
				continue
			}
			for _, d := range p.Deps {
				for dep := range rooms {
					if strings.HasPrefix(d, dep) && !allowed("sdk", rooms[dep]) {
						t.Errorf("%s depends on %s", rel, d)
					}
				}
			}
		}
	}
}
