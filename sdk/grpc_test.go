package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
)

// fakePEFT rewrites each block's output with y = x + 0·p and fails on request.
type fakePEFT struct{}

func (fakePEFT) Describe(context.Context, *DescribeRequest) (*DescribeResponse, error) {
	return &DescribeResponse{Name: "peft.fake", Version: "1.2.3", Description: "fake",
		ConfigSchema: json.RawMessage(`{"type":"object"}`), Defaults: json.RawMessage(`{"k":1}`)}, nil
}

func (fakePEFT) Plan(_ context.Context, req *PlanRequest) (*PlanResponse, error) {
	switch string(req.Config) {
	case `"bad"`:
		return nil, fmt.Errorf("peft.fake: %w: bad is bad", ErrInvalidConfig)
	case `"unsupported"`:
		return nil, fmt.Errorf("peft.fake: %w: needs attention", ErrUnsupportedBackbone)
	case `"panic"`:
		panic("boom")
	}
	resp := &PlanResponse{Config: json.RawMessage(`{"k":1}`), Notes: []string{"a note"}}
	for _, blk := range req.Manifest.Blocks {
		out, _ := blk.Output()
		b := NewBuilder(req.Manifest.Opset)
		x := b.Input("x")
		p := b.Param(Zeros("p", 4))
		g, err := b.Build(b.Add(x, b.Mul(p, b.Scalar(0))))
		if err != nil {
			return nil, err
		}
		resp.Blocks = append(resp.Blocks, BlockPlan{Block: blk.Index, Rewrites: []Rewrite{
			{Edge: out, Graph: g, Init: map[string]Init{"p": Normal(0, 0.5)}, Dropout: map[string]float64{"p": 0.1}},
		}})
	}
	return resp, nil
}

type fakeSelector struct{}

func (fakeSelector) Select(_ context.Context, req *SelectRequest) (*SelectResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	seq := make([]int, req.Slices)
	for i := range seq {
		seq[i] = (i + int(req.Seed)) % req.Slices
	}
	return &SelectResponse{Sequences: [][]int{seq}}, nil
}

func testManifest() Manifest {
	shape := ShapeOf(-1, 4)
	shape[0].Param = "batch"
	return Manifest{Version: ManifestVersion, Opset: 14, Family: "manual", Blocks: []Block{
		{Index: 0, Name: "layers.0", Edges: []Edge{{Role: RoleOutput, Kind: KindActivation, Tensor: "h0", DType: DTypeFloat32, Shape: shape}}},
		{Index: 1, Name: "layers.1", Edges: []Edge{{Role: RoleOutput, Kind: KindActivation, Tensor: "h1", DType: DTypeFloat32, Shape: shape}}},
	}}
}

// dispense connects a host-side plugin set to a plugin-side one in-process, over gRPC.
func dispense(t *testing.T, p *Plugin, kind string) any {
	t.Helper()
	server := serverPlugins(p)[ProtocolVersion]
	client, _ := plugin.TestPluginGRPCConn(t, false, server)
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(kind)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestGRPCInfo(t *testing.T) {
	p := &Plugin{Name: "peft.fake", Version: "1.2.3", Description: "d", PEFT: fakePEFT{}}
	info, err := dispense(t, p, InfoName).(InfoService).Info(context.Background(), &InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Info{Name: "peft.fake", Version: "1.2.3", Kind: KindPEFT, Description: "d", SDKVersion: Version}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("Info = %+v, want %+v", info, want)
	}
}

func TestGRPCPEFT(t *testing.T) {
	remote := dispense(t, &Plugin{Name: "peft.fake", Version: "1.2.3", PEFT: fakePEFT{}}, string(KindPEFT)).(PEFT)
	ctx := context.Background()
	d, err := remote.Describe(ctx, &DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	local, _ := fakePEFT{}.Describe(ctx, nil)
	if !reflect.DeepEqual(d, local) {
		t.Errorf("Describe = %+v, want %+v", d, local)
	}
	req := &PlanRequest{Manifest: testManifest()}
	got, err := remote.Plan(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fakePEFT{}.Plan(ctx, req)
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("the plan changed on the wire:\n got %s\nwant %s", gj, wj)
	}
	man := testManifest()
	if err := ValidatePlan(&man, got); err != nil {
		t.Error(err)
	}

	tests := []struct {
		config string
		want   error
		text   string
	}{
		{`"bad"`, ErrInvalidConfig, "bad is bad"},
		{`"unsupported"`, ErrUnsupportedBackbone, "needs attention"},
		{`"panic"`, nil, "Plan panicked: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			_, err := remote.Plan(ctx, &PlanRequest{Manifest: testManifest(), Config: json.RawMessage(tt.config)})
			if err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("got %v, want an error saying %q", err, tt.text)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("%v does not wrap %v", err, tt.want)
			}
			var re *RemoteError
			if !errors.As(err, &re) || re.Transport() {
				t.Errorf("%v: want a RemoteError from the plugin's code", err)
			}
		})
	}
}

func TestGRPCSelector(t *testing.T) {
	remote := dispense(t, &Plugin{Name: "selector.fake", Version: "1", Selector: fakeSelector{}}, string(KindSelector)).(Selector)
	ctx := context.Background()
	req := &SelectRequest{Slices: 5, Budget: 1, Seed: 2, Prior: []float64{.1, .2, .3, .2, .2}, ExpectedDeletions: 1.5}
	got, err := remote.Select(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fakeSelector{}.Select(ctx, req)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Select = %v, want %v", got, want)
	}
	_, err = remote.Select(ctx, &SelectRequest{Slices: 3, Budget: 7})
	if !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("impossible budget: %v, want ErrInvalidRequest", err)
	}
}

func TestSelectConverters(t *testing.T) {
	req := &SelectRequest{Slices: 3, Budget: 2, Prior: []float64{0.5, 0.25, 0.25}, ExpectedDeletions: 2, Seed: -4}
	if got := selectRequestFromProto(selectRequestToProto(req)); !reflect.DeepEqual(got, req) {
		t.Errorf("request round trip: %+v", got)
	}
	resp := &SelectResponse{Sequences: [][]int{{0, 1, 2}, {2, 0, 1}}}
	if got := selectResponseFromProto(selectResponseToProto(resp)); !reflect.DeepEqual(got, resp) {
		t.Errorf("response round trip: %+v", got)
	}
}
