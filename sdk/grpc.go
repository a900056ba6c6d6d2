package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/s3t-dev/s3t/sdk/internal/pluginpb"
)

// The gRPC shims: for each service a go-plugin plugin type, a server that calls the Go
// implementation, and a client that implements the Go interface over the connection. The
// converters between the plain Go types and the generated ones are at the end of the file.

// infoPlugin serves and dispenses the InfoService.
type infoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	info *Info
}

func (p *infoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterInfoServer(s, &infoServer{info: p.info})
	return nil
}

func (p *infoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &infoClient{c: pluginpb.NewInfoClient(c)}, nil
}

type infoServer struct {
	pluginpb.UnimplementedInfoServer
	info *Info
}

func (s *infoServer) GetInfo(context.Context, *pluginpb.GetInfo_Request) (*pluginpb.GetInfo_Response, error) {
	i := s.info
	return &pluginpb.GetInfo_Response{Name: i.Name, Version: i.Version, Kind: string(i.Kind), Description: i.Description, SdkVersion: i.SDKVersion}, nil
}

type infoClient struct{ c pluginpb.InfoClient }

func (c *infoClient) Info(ctx context.Context, _ *InfoRequest) (*Info, error) {
	r, err := c.c.GetInfo(ctx, &pluginpb.GetInfo_Request{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Info{Name: r.GetName(), Version: r.GetVersion(), Kind: Kind(r.GetKind()), Description: r.GetDescription(), SDKVersion: r.GetSdkVersion()}, nil
}

// peftPlugin serves and dispenses a PEFT.
type peftPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl PEFT
}

func (p *peftPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPEFTServer(s, &peftServer{impl: p.impl})
	return nil
}

func (p *peftPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &peftClient{c: pluginpb.NewPEFTClient(c)}, nil
}

type peftServer struct {
	pluginpb.UnimplementedPEFTServer
	impl PEFT
}

func (s *peftServer) Describe(ctx context.Context, _ *pluginpb.Describe_Request) (*pluginpb.Describe_Response, error) {
	var resp *DescribeResponse
	err := guard("Describe", func() (err error) {
		resp, err = s.impl.Describe(ctx, &DescribeRequest{})
		return err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if resp == nil {
		return nil, toStatus(errors.New("Describe returned no response"))
	}
	return &pluginpb.Describe_Response{Name: resp.Name, Version: resp.Version, Description: resp.Description,
		ConfigSchema: resp.ConfigSchema, Defaults: resp.Defaults}, nil
}

func (s *peftServer) Plan(ctx context.Context, req *pluginpb.Plan_Request) (*pluginpb.Plan_Response, error) {
	in := &PlanRequest{Config: req.GetConfig()}
	if err := json.Unmarshal(req.GetManifest(), &in.Manifest); err != nil {
		return nil, toStatus(fmt.Errorf("%w: manifest: %w", ErrInvalidManifest, err))
	}
	var resp *PlanResponse
	err := guard("Plan", func() (err error) {
		resp, err = s.impl.Plan(ctx, in)
		return err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if resp == nil {
		return nil, toStatus(errors.New("Plan returned no response"))
	}
	data, err := json.Marshal(resp)
	if err != nil {
		return nil, toStatus(fmt.Errorf("%w: encoding the plan: %w", ErrInvalidPlan, err))
	}
	return &pluginpb.Plan_Response{Plan: data}, nil
}

type peftClient struct{ c pluginpb.PEFTClient }

func (c *peftClient) Describe(ctx context.Context, _ *DescribeRequest) (*DescribeResponse, error) {
	r, err := c.c.Describe(ctx, &pluginpb.Describe_Request{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &DescribeResponse{Name: r.GetName(), Version: r.GetVersion(), Description: r.GetDescription(),
		ConfigSchema: r.GetConfigSchema(), Defaults: r.GetDefaults()}, nil
}

func (c *peftClient) Plan(ctx context.Context, req *PlanRequest) (*PlanResponse, error) {
	man, err := json.Marshal(&req.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	r, err := c.c.Plan(ctx, &pluginpb.Plan_Request{Manifest: man, Config: req.Config})
	if err != nil {
		return nil, fromStatus(err)
	}
	var plan PlanResponse
	if err := json.Unmarshal(r.GetPlan(), &plan); err != nil {
		return nil, fmt.Errorf("%w: decoding the plan: %w", ErrInvalidPlan, err)
	}
	return &plan, nil
}

// selectorPlugin serves and dispenses a Selector.
type selectorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Selector
}

func (p *selectorPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterSelectorServer(s, &selectorServer{impl: p.impl})
	return nil
}

func (p *selectorPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &selectorClient{c: pluginpb.NewSelectorClient(c)}, nil
}

type selectorServer struct {
	pluginpb.UnimplementedSelectorServer
	impl Selector
}

func (s *selectorServer) Select(ctx context.Context, req *pluginpb.Select_Request) (*pluginpb.Select_Response, error) {
	in := selectRequestFromProto(req)
	var resp *SelectResponse
	err := guard("Select", func() (err error) {
		resp, err = s.impl.Select(ctx, in)
		return err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if resp == nil {
		return nil, toStatus(errors.New("Select returned no response"))
	}
	return selectResponseToProto(resp), nil
}

type selectorClient struct{ c pluginpb.SelectorClient }

func (c *selectorClient) Select(ctx context.Context, req *SelectRequest) (*SelectResponse, error) {
	r, err := c.c.Select(ctx, selectRequestToProto(req))
	if err != nil {
		return nil, fromStatus(err)
	}
	return selectResponseFromProto(r), nil
}

// guard runs a plugin method, turning a panic into an error (and a log line with the stack on
// the plugin's stderr, which the host logs under the plugin's name), so that one bad request
// does not take the plugin process down.
func guard(method string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("plugin method panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("%s panicked: %v", method, r)
		}
	}()
	return fn()
}

// Converters.

func selectRequestToProto(r *SelectRequest) *pluginpb.Select_Request {
	return &pluginpb.Select_Request{Slices: int64(r.Slices), Budget: int64(r.Budget), Prior: r.Prior,
		ExpectedDeletions: r.ExpectedDeletions, Seed: r.Seed}
}

func selectRequestFromProto(r *pluginpb.Select_Request) *SelectRequest {
	return &SelectRequest{Slices: int(r.GetSlices()), Budget: int(r.GetBudget()), Prior: r.GetPrior(),
		ExpectedDeletions: r.GetExpectedDeletions(), Seed: r.GetSeed()}
}

func selectResponseToProto(r *SelectResponse) *pluginpb.Select_Response {
	out := &pluginpb.Select_Response{Sequences: make([]*pluginpb.Select_Sequence, len(r.Sequences))}
	for i, seq := range r.Sequences {
		s := &pluginpb.Select_Sequence{Slices: make([]int64, len(seq))}
		for j, v := range seq {
			s.Slices[j] = int64(v)
		}
		out.Sequences[i] = s
	}
	return out
}

func selectResponseFromProto(r *pluginpb.Select_Response) *SelectResponse {
	out := &SelectResponse{Sequences: make([][]int, len(r.GetSequences()))}
	for i, s := range r.GetSequences() {
		seq := make([]int, len(s.GetSlices()))
		for j, v := range s.GetSlices() {
			seq[j] = int(v)
		}
		out.Sequences[i] = seq
	}
	return out
}

// errorDomain is the ErrorInfo domain of the reasons below.
const errorDomain = "s3t.dev/plugin"

// sentinels are the SDK errors that keep their identity across the process boundary, by the
// ErrorInfo reason that carries them. Order matters: the first match names an error.
var sentinels = []struct {
	reason string
	err    error
	code   codes.Code
}{
	{"INVALID_CONFIG", ErrInvalidConfig, codes.InvalidArgument},
	{"UNSUPPORTED_BACKBONE", ErrUnsupportedBackbone, codes.FailedPrecondition},
	{"INVALID_MANIFEST", ErrInvalidManifest, codes.InvalidArgument},
	{"INVALID_REQUEST", ErrInvalidRequest, codes.InvalidArgument},
	{"INVALID_PLAN", ErrInvalidPlan, codes.Internal},
	{"INVALID_SUBGRAPH", ErrInvalidSubgraph, codes.Internal},
	{"INVALID_TENSOR", ErrInvalidTensor, codes.Internal},
}

// toStatus turns an implementation's error into a gRPC status that names its SDK sentinel.
func toStatus(err error) error {
	code := codes.Unknown
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			st, derr := status.New(s.code, err.Error()).WithDetails(&errdetails.ErrorInfo{Reason: s.reason, Domain: errorDomain})
			if derr == nil {
				return st.Err()
			}
			code = s.code
			break
		}
	}
	return status.New(code, err.Error()).Err()
}

// RemoteError is an error that came back from a plugin call: the plugin's message, its SDK
// sentinel when it had one (errors.Is works), and the gRPC status (status.Code works).
type RemoteError struct {
	st       *status.Status
	sentinel error
}

// Error returns the plugin's message.
func (e *RemoteError) Error() string { return e.st.Message() }

// Unwrap returns the SDK sentinel the plugin's error wrapped, if any.
func (e *RemoteError) Unwrap() error { return e.sentinel }

// GRPCStatus returns the call's status.
func (e *RemoteError) GRPCStatus() *status.Status { return e.st }

// Transport reports whether the call failed on its way rather than in the plugin's code: the
// process is gone or unreachable, or the call was cancelled or timed out.
func (e *RemoteError) Transport() bool {
	switch e.st.Code() {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
		return e.sentinel == nil
	}
	return false
}

// fromStatus turns a gRPC error into a RemoteError.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	re := &RemoteError{st: st}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != errorDomain {
			continue
		}
		for _, s := range sentinels {
			if s.reason == info.GetReason() {
				re.sentinel = s.err
			}
		}
	}
	return re
}

// Interface guards.
var (
	_ plugin.GRPCPlugin = (*infoPlugin)(nil)
	_ plugin.GRPCPlugin = (*peftPlugin)(nil)
	_ plugin.GRPCPlugin = (*selectorPlugin)(nil)
	_ InfoService       = (*infoClient)(nil)
	_ PEFT              = (*peftClient)(nil)
	_ Selector          = (*selectorClient)(nil)
)
