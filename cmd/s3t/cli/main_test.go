package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// TestMain makes this test binary behave as the s3t executable when a plugin host starts it
// (the go-plugin handshake cookie is set): `<test binary> plugin run NAME` serves a built-in
// through the real command line, as `s3t plugin run NAME` does, and without arguments (an
// installed copy) it serves selector.clitest, a third-party plugin.
//
// With S3T_TEST_PEFT_PLUGIN=1 an installed copy serves peft.clitest instead: LoRA under a
// third-party name. With S3T_TEST_PEFT_PLUGIN=stdout it writes a line that is no handshake to
// stdout and waits to be killed: a start that fails with go-plugin's error of several lines.
//
// With S3T_TEST_AS_CLI=1 the test binary is the s3t command itself (`<test binary> serve
// ...`), with the signal handling of cmd/s3t: the crash tests run and kill real server
// processes. A plugin host's child is checked for first: such a server starts its plugins with
// its own environment, S3T_TEST_AS_CLI included.
func TestMain(m *testing.M) {
	if os.Getenv(sdk.Handshake.MagicCookieKey) == sdk.Handshake.MagicCookieValue {
		if len(os.Args) > 1 {
			os.Exit(Execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
		}
		switch os.Getenv(envPEFTPlugin) {
		case "1":
			sdk.Serve(&sdk.Plugin{Name: "peft.clitest", Version: "0.1.0", PEFT: clitestPEFT{lora.New()}})
			os.Exit(0)
		case "broken":
			sdk.Serve(&sdk.Plugin{Name: "peft.clitest", Version: "0.1.0", PEFT: brokenPEFT{clitestPEFT{lora.New()}}})
			os.Exit(0)
		case "misnamed": // LoRA served as peft.clitest, describing itself as peft.lora
			sdk.Serve(&sdk.Plugin{Name: "peft.clitest", Version: "0.1.0", PEFT: lora.New()})
			os.Exit(0)
		case "stdout":
			fmt.Println("clitest: not a handshake")
			time.Sleep(time.Minute) // the host kills it; the line, not an exit, fails the start
			os.Exit(1)
		}
		sdk.Serve(&sdk.Plugin{Name: "selector.clitest", Version: "0.1.0", Selector: clitestSelector{}})
		os.Exit(0)
	}
	if os.Getenv("S3T_TEST_AS_CLI") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// envPEFTPlugin makes an installed copy of the test binary serve peft.clitest (see TestMain).
const envPEFTPlugin = "S3T_TEST_PEFT_PLUGIN"

// clitestSelector is selector.clitest, a third-party selector: the cyclic rotations, each
// reversed, so that no built-in gives its sequences. Some seeds make it misbehave, for the
// tests of what a plugin's faults answer (faultySeeds).
type clitestSelector struct{}

// faultySeeds are the seeds for which selector.clitest misbehaves.
var faultySeeds = map[int64]string{9001: "duplicates", 9002: "error", 9003: "panic", 9004: "refuses"}

func (clitestSelector) Select(ctx context.Context, req *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	switch faultySeeds[req.Seed] {
	case "duplicates":
		seq := make([]int, req.Slices)
		for i := range seq {
			seq[i] = i
		}
		return &sdk.SelectResponse{Sequences: [][]int{seq, slices.Clone(seq)}}, nil
	case "error":
		return nil, errors.New("the clitest service is down")
	case "panic":
		panic("clitest selector panics")
	case "refuses":
		return nil, fmt.Errorf("%w: clitest takes no seed 9004", sdk.ErrInvalidRequest)
	}
	resp, err := unlearning.Cyclic{}.Select(ctx, req)
	if err == nil {
		for _, s := range resp.Sequences {
			slices.Reverse(s)
		}
	}
	return resp, err
}

// brokenPEFT is peft.clitest whose "off" values are not the identity: LoRA with A and B off
// at 0.5 instead of 0 (S3T_TEST_PEFT_PLUGIN=broken).
type brokenPEFT struct{ clitestPEFT }

func (p brokenPEFT) Plan(ctx context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	plan, err := p.clitestPEFT.Plan(ctx, req)
	if err != nil {
		return nil, err
	}
	for _, bp := range plan.Blocks {
		for _, rw := range bp.Rewrites {
			for i := range rw.Graph.Params {
				if n := rw.Graph.Params[i].Name; n == "A" || n == "B" {
					for j := range rw.Graph.Params[i].Float32 {
						rw.Graph.Params[i].Float32[j] = 0.5
					}
				}
			}
		}
	}
	return plan, nil
}

// clitestPEFT is LoRA described as peft.clitest, a third-party PEFT plugin.
type clitestPEFT struct{ *lora.LoRA }

func (p clitestPEFT) Describe(ctx context.Context, req *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	d, err := p.LoRA.Describe(ctx, req)
	if err != nil {
		return nil, err
	}
	d.Name, d.Version = "peft.clitest", "0.1.0"
	return d, nil
}
