package sdk_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/sdk"
)

// TestREADMEBuilderSnippet: every code line of README.md's Builder snippet is a line of
// ExampleBuilder (comments aside), so the snippet compiles and computes what its output says;
// it read `alpha/r`, which does not compile with typed variables and is an integer division
// with untyped constants.
func TestREADMEBuilderSnippet(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(example), "\n") {
		have[codeOf(l)] = true
	}
	_, after, ok := strings.Cut(string(readme), "Use the `Builder` instead of filling `Node` structs:")
	if !ok {
		t.Fatal("README.md has no Builder snippet")
	}
	_, after, _ = strings.Cut(after, "```go\n")
	snippet, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("README.md's Builder snippet is not a closed code block")
	}
	n := 0
	for _, l := range strings.Split(snippet, "\n") {
		if c := codeOf(l); c != "" {
			n++
			if !have[c] {
				t.Errorf("README.md's Builder snippet line %q is not in ExampleBuilder", c)
			}
		}
	}
	if n < 5 {
		t.Errorf("README.md's Builder snippet has %d code lines:\n%s", n, snippet)
	}
}

// codeOf returns a Go line without its comment and surrounding space.
func codeOf(line string) string {
	if i := strings.Index(line, "//"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// TestREADMEFacts: what README.md tells plugin authors about the handshake and the Go version
// is what the SDK and the module use.
func TestREADMEFacts(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var goLine string
	for _, l := range strings.Split(string(gomod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			goLine = strings.TrimSpace(v)
		}
	}
	for _, want := range []string{
		"`" + sdk.Handshake.MagicCookieKey + "=" + sdk.Handshake.MagicCookieValue + "`",
		fmt.Sprintf("`PLUGIN_PROTOCOL_VERSIONS=%d`", sdk.ProtocolVersion),
		fmt.Sprintf("`1|%d|unix|", sdk.ProtocolVersion),
		"**Go " + goLine + "**",
		"module `github.com/s3t-dev/s3t`",
	} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md does not say %s", want)
		}
	}
}
