package sdk

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"valid", func(*Manifest) {}, ""},
		{"version", func(m *Manifest) { m.Version = 2 }, "version 2"},
		{"no blocks", func(m *Manifest) { m.Blocks = nil }, "no blocks"},
		{"index", func(m *Manifest) { m.Blocks[1].Index = 3 }, "index 3"},
		{"no name", func(m *Manifest) { m.Blocks[0].Name = "" }, "no name"},
		{"two outputs", func(m *Manifest) { m.Blocks[0].Edges = append(m.Blocks[0].Edges, Edge{Role: RoleOutput, Tensor: "x"}) }, "2 output edges"},
		{"role", func(m *Manifest) { m.Blocks[0].Edges[0].Role = "Output" }, "role must match"},
		{"kind", func(m *Manifest) { m.Blocks[0].Edges[0].Kind = KindWeight }, "kind"},
		{"listed twice", func(m *Manifest) {
			m.Blocks[0].Edges = append(m.Blocks[0].Edges, Edge{Role: "conv", Tensor: "w"}, Edge{Role: "conv", Tensor: "w"})
		}, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest()
			tt.change(&m)
			err := m.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidManifest mentioning %q", err, tt.want)
			}
		})
	}
}

func TestBlockMatches(t *testing.T) {
	b := Block{Index: 1, Name: "encoder.layer.1"}
	for key, want := range map[string]bool{"1": true, "encoder.layer.1": true, "encoder.layer.10": false, "layer.1": false, "01": false, "": false} {
		if got := b.Matches(key); got != want {
			t.Errorf("Matches(%q) = %v, want %v", key, got, want)
		}
	}
}

// TestManifestJSON: the manifest's JSON form is what plugins receive; it round-trips.
func TestManifestJSON(t *testing.T) {
	m := testManifest()
	m.Blocks[0].Edges = append(m.Blocks[0].Edges, Edge{Role: RoleQuery, Kind: KindWeight, Tensor: "q", Consumers: []string{"n"},
		DType: DTypeFloat32, Shape: ShapeOf(4, 4), Layout: LayoutOutIn, Param: "layers.0.q.weight"})
	data, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"batch"`, `"float32"`, `"out_in"`, `"role": "query"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s:\n%s", want, data)
		}
	}
	var back Manifest
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, m)
	}
}
