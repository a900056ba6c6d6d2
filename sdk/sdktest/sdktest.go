// Package sdktest is the conformance suite for s3t plugins: a plugin author runs it from their
// own `go test`, against the plugin running as a real process, exactly as the s3t host runs it.
//
// For a PEFT plugin (TestPEFT) it checks Describe (name, version, a JSON Schema and defaults),
// that a config that is not a JSON object is refused with sdk.ErrInvalidConfig, and then, on a
// real backbone (the Fashion-MNIST ViT that ships with s3t, both as exported, with weights read
// through Transpose nodes in out_in layout, and canonicalized, with in_out weights read directly
// by MatMul), for the default config and any given with WithConfigs: that the plan is
// deterministic and well-formed (sdk.ValidatePlan); that it splices into the backbone; that with
// every parameter at its "off" value, fed or left at its default, ONNX Runtime computes the
// backbone's outputs within 1e-6; that parameters away from "off" in any one block change the
// outputs; that the parameters' init values give finite outputs; and, with WithTrainCheck, the
// trainer's own check (for example that GoMLX imports the spliced model and every parameter gets
// a gradient).
//
// For a selector plugin (TestSelector) it checks that Select returns exactly B distinct
// permutations of 0..L-1 for a range of (L, B), the same ones for the same seed (also from a
// freshly started process), and that an impossible request is refused with
// sdk.ErrInvalidRequest.
//
// Two ways to run the plugin as a process: Binary(path) for a built binary, or Self() for the
// test binary itself, which serves the plugin when it is started by the suite if the package's
// TestMain calls Main:
//
//	func TestMain(m *testing.M) { sdktest.Main(m, myplugin.Plugin()) }
//
//	func TestConformance(t *testing.T) { sdktest.TestPEFT(t, sdktest.Self()) }
//
// RunPEFT and RunSelector run the same checks on an implementation in-process, for quick unit
// tests. The suite needs ONNX Runtime (see package backbone/ort).
package sdktest

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
)

// EnvServe is the variable that makes a test binary whose TestMain calls Main serve its plugin
// instead of running its tests. Self sets it.
const EnvServe = "S3T_SDKTEST_SERVE"

// Main is for a test package's TestMain: when the suite started this binary as the plugin
// (EnvServe set), it serves p and exits; otherwise it runs the tests.
func Main(m *testing.M, p *sdk.Plugin) {
	// A test binary started by a host (the handshake cookie is set) serves rather than run the
	// tests again, whatever started it.
	if os.Getenv(EnvServe) != "" || os.Getenv(sdk.Handshake.MagicCookieKey) == sdk.Handshake.MagicCookieValue {
		sdk.Serve(p)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Self returns the command that starts this test binary as the plugin its TestMain passes to
// Main.
func Self() plugins.Command {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return plugins.Command{Path: exe, Env: []string{EnvServe + "=1"}}
}

// Binary returns the command that starts the plugin binary at path.
func Binary(path string, args ...string) plugins.Command {
	return plugins.Command{Path: path, Args: args}
}

// TrainCheck is the trainer's part of the conformance suite: given a backbone with a plan
// spliced in (an ONNX model) and the plan's parameters (global names, off values and inits),
// it checks that the training engine imports the model and that every parameter gets a finite,
// non-zero gradient. s3t's GoMLX trainer provides one; sdktest does not import a training
// engine.
type TrainCheck func(ctx context.Context, model []byte, params []sdk.ParamSpec) error

// Option configures the suite.
type Option func(*config)

type config struct {
	configs     []json.RawMessage
	tolerance   float64
	minChange   float64
	trainCheck  TrainCheck
	logger      *slog.Logger
	callTimeout time.Duration
	name        string
}

func newConfig(opts []Option) config {
	c := config{tolerance: OffTolerance, minChange: MinChange, callTimeout: 2 * time.Minute,
		logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// OffTolerance is the largest difference between the backbone's outputs and the spliced model's
// with every parameter off that the suite accepts.
const OffTolerance = 1e-6

// MinChange is the smallest largest-difference in the outputs that parameters away from "off"
// in one block must cause.
const MinChange = 1e-4

// WithConfigs adds configs (JSON objects) to plan with, besides the plugin's defaults.
func WithConfigs(configs ...string) Option {
	return func(c *config) {
		for _, s := range configs {
			c.configs = append(c.configs, json.RawMessage(s))
		}
	}
}

// WithTolerance replaces OffTolerance.
func WithTolerance(tol float64) Option { return func(c *config) { c.tolerance = tol } }

// WithTrainCheck runs the trainer's check on every spliced model (see TrainCheck).
func WithTrainCheck(fn TrainCheck) Option { return func(c *config) { c.trainCheck = fn } }

// WithLogger sets the logger that receives the plugin's stderr. Default: warnings and errors to
// stderr.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithName makes the suite require the plugin to report this name.
func WithName(name string) Option { return func(c *config) { c.name = name } }

// start launches cmd under a host Client that the test closes at its end.
func start(t *testing.T, cmd plugins.Command, cfg config) *plugins.Client {
	t.Helper()
	sum, err := plugins.FileSHA256(cmd.Path)
	if err != nil {
		t.Fatalf("sdktest: plugin binary: %v", err)
	}
	c := plugins.NewClient("plugin-under-test", cmd, sum, plugins.WithLogger(cfg.logger), plugins.WithCallTimeout(cfg.callTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// info checks the plugin's Info and returns it.
func info(t *testing.T, c *plugins.Client, kind sdk.Kind, cfg config) *sdk.Info {
	t.Helper()
	in, err := c.Info(context.Background())
	if err != nil {
		t.Fatalf("sdktest: starting the plugin: %v", err)
	}
	if in.Kind != kind {
		t.Fatalf("sdktest: the plugin is a %q plugin, want %q", in.Kind, kind)
	}
	p := sdk.Plugin{Name: in.Name, Version: in.Version}
	if kind == sdk.KindPEFT {
		p.PEFT = placeholder{}
	} else {
		p.Selector = placeholder{}
	}
	if err := p.Validate(); err != nil {
		t.Errorf("sdktest: info: %v", err)
	}
	if cfg.name != "" && in.Name != cfg.name {
		t.Errorf("sdktest: the plugin says it is %q, want %q", in.Name, cfg.name)
	}
	if c.Protocol() < 1 {
		t.Errorf("sdktest: negotiated protocol %d", c.Protocol())
	}
	t.Logf("plugin %s %s (%s), SDK %s, protocol %d", in.Name, in.Version, in.Kind, in.SDKVersion, c.Protocol())
	return in
}

// placeholder stands in for an implementation when validating a name.
type placeholder struct{}

func (placeholder) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return nil, nil
}
func (placeholder) Plan(context.Context, *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	return nil, nil
}
func (placeholder) Select(context.Context, *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	return nil, nil
}
