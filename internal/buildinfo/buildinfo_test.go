package buildinfo

import "testing"

// TestVersion: the version linked in (make build) wins; without one, a build still names
// itself (a test binary: "devel", or the commit the toolchain stamped).
func TestVersion(t *testing.T) {
	old := version
	defer func() { version = old }()
	version = ""
	if v := Version(); v == "" {
		t.Fatal("empty version")
	}
	version = "v1.2.3-4-gabcdef"
	if v := Version(); v != "v1.2.3-4-gabcdef" {
		t.Fatalf("Version() = %q, want the linked-in one", v)
	}
}
