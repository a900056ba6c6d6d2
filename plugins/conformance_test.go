package plugins_test

import (
	"testing"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/sdk/sdktest"
)

// TestBuiltinsConformance runs the SDK's conformance suite on every built-in, each as a real
// plugin process: this test binary serving the built-in exactly as `s3t plugin run NAME` does.
// PEFT plans also go through the trainer's check (adapters.CheckTrainable: GoMLX imports the
// spliced model and every parameter gets a finite, non-zero gradient).
func TestBuiltinsConformance(t *testing.T) {
	names := plugins.Builtins().Names()
	if len(names) != 6 {
		t.Fatalf("built-ins %v, want six", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p, _ := plugins.Builtins().Lookup(name)
			cmd := self(t, name)
			switch p.Kind() {
			case sdk.KindPEFT:
				sdktest.TestPEFT(t, cmd, sdktest.WithName(name), sdktest.WithLogger(quietLogger()),
					sdktest.WithTrainCheck(adapters.CheckTrainable))
			case sdk.KindSelector:
				sdktest.TestSelector(t, cmd, sdktest.WithName(name), sdktest.WithLogger(quietLogger()))
			default:
				t.Fatalf("kind %q", p.Kind())
			}
		})
	}
}
