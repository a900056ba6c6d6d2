package training_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// TestNewRecordHeadInput checks that the spec's head input is the one the record keeps (and
// stores): the default when the spec names none, the named output otherwise, and an error for a
// name the backbone does not output.
func TestNewRecordHeadInput(t *testing.T) {
	tests := []struct {
		head, want string
		invalid    bool
	}{
		{"", "features", false},
		{"features", "features", false},
		{"logits", "logits", false},
		{"nope", "", true},
	}
	for _, tt := range tests {
		t.Run("head_input="+tt.head, func(t *testing.T) {
			spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, HeadInput: tt.head,
				PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 1, Sequences: 1}}
			rec, err := training.NewRecord(context.Background(), spec, assets.ViTFashionMNIST(), nil)
			if tt.invalid {
				if !errors.Is(err, training.ErrInvalidSpec) {
					t.Fatalf("NewRecord = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			back, err := training.DecodeRecord(&store.Model{Name: "m", Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			if rec.HeadInput != tt.want || back.HeadInput != tt.want {
				t.Errorf("head input %q, stored and read back %q; want %q", rec.HeadInput, back.HeadInput, tt.want)
			}
			if rec.PEFT.Type != "peft.lora" || back.PEFT.Type != "peft.lora" {
				t.Errorf("PEFT type %q, read back %q; want the plugin's full name, peft.lora", rec.PEFT.Type, back.PEFT.Type)
			}
		})
	}
}
