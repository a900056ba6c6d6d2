package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/sdk/internal/pluginpb"
)

// envRaw makes this test binary, started by a host, the plugin of rawPlugin.
const envRaw = "S3T_SDK_TEST_RAW_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRaw) == "1" {
		if err := rawPlugin(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rawPlugin is selector.raw, served as README.md's "The handshake" tells a plugin written in
// another language to serve: none of sdk.Serve or go-plugin's server, only gRPC, the generated
// services of plugin.proto, the standard health service and one line on stdout.
func rawPlugin() error {
	if os.Getenv(sdk.Handshake.MagicCookieKey) != sdk.Handshake.MagicCookieValue {
		return errors.New("selector.raw: run by a host only")
	}
	if v := os.Getenv("PLUGIN_PROTOCOL_VERSIONS"); !strings.Contains(","+v+",", fmt.Sprintf(",%d,", sdk.ProtocolVersion)) {
		return fmt.Errorf("selector.raw: the host speaks protocols %q", v)
	}
	dir, err := os.MkdirTemp("", "s3t-raw-plugin")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("plugin", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	pluginpb.RegisterInfoServer(s, rawInfo{})
	pluginpb.RegisterSelectorServer(s, rawSelector{})
	// go-plugin's plugin.GRPCController (its internal/plugin/grpc_controller.proto): Shutdown,
	// from an empty message to an empty message.
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "plugin.GRPCController",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Shutdown", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&emptypb.Empty{}); err != nil {
				return nil, err
			}
			go func() { time.Sleep(10 * time.Millisecond); s.Stop() }()
			return &emptypb.Empty{}, nil
		}}},
	}, struct{}{})
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "1|%d|unix|%s|grpc\n", sdk.ProtocolVersion, sock)
	w.Flush()
	go func() { // exit when the host is gone
		for ppid := os.Getppid(); os.Getppid() == ppid; {
			time.Sleep(200 * time.Millisecond)
		}
		os.Exit(0)
	}()
	return s.Serve(l)
}

type rawInfo struct {
	pluginpb.UnimplementedInfoServer
}

func (rawInfo) GetInfo(context.Context, *pluginpb.GetInfo_Request) (*pluginpb.GetInfo_Response, error) {
	return &pluginpb.GetInfo_Response{Name: "selector.raw", Version: "0.0.1", Kind: "selector"}, nil
}

type rawSelector struct {
	pluginpb.UnimplementedSelectorServer
}

// Select answers the identity order for one order, refuses other budgets as INVALID_REQUEST.
func (rawSelector) Select(_ context.Context, req *pluginpb.Select_Request) (*pluginpb.Select_Response, error) {
	if req.GetBudget() != 1 {
		st, err := status.New(codes.InvalidArgument, "selector.raw: one order only").
			WithDetails(&errdetails.ErrorInfo{Domain: "s3t.dev/plugin", Reason: "INVALID_REQUEST"})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	seq := &pluginpb.Select_Sequence{}
	for i := range req.GetSlices() {
		seq.Slices = append(seq.Slices, i)
	}
	return &pluginpb.Select_Response{Sequences: []*pluginpb.Select_Sequence{seq}}, nil
}

// TestHandshakeWithoutSDK: a plugin that follows README.md's "The handshake" without the SDK
// runs under the s3t host, its errors keep their sentinel, and it stops when the host asks.
func TestHandshakeWithoutSDK(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := plugins.FileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	c := plugins.NewClient("selector.raw", plugins.Command{Path: exe, Env: []string{envRaw + "=1"}}, sum,
		plugins.WithStartTimeout(20*time.Second))
	defer c.Close()
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "selector.raw" || info.Kind != sdk.KindSelector || c.Protocol() != sdk.ProtocolVersion {
		t.Errorf("info %+v, protocol %d", info, c.Protocol())
	}
	resp, err := c.Selector().Select(ctx, &sdk.SelectRequest{Slices: 3, Budget: 1})
	if err != nil || fmt.Sprint(resp.Sequences) != "[[0 1 2]]" {
		t.Errorf("Select: %v, %v", resp, err)
	}
	if _, err := c.Selector().Select(ctx, &sdk.SelectRequest{Slices: 3, Budget: 2}); !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Errorf("Select of 2 orders: %v, want an error wrapping sdk.ErrInvalidRequest", err)
	}
	start := time.Now()
	c.Close()
	for c.Pid() != 0 && time.Since(start) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the plugin took %v to stop: it was killed rather than shut down", d)
	}
}
