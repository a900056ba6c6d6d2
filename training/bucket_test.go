package training_test

import (
	"context"
	"testing"

	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/training"
)

// TestCheckBucket: the check a process runs at start finds a bucket that holds the backbone of
// every model, and names a backbone the bucket lacks with the models that use it.
func TestCheckBucket(t *testing.T) {
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	if c, err := training.CheckBucket(ctx, st, blobs); err != nil || c.Models != 0 || c.Wrong() {
		t.Fatalf("empty ledger: %+v, %v; want no models and not wrong", c, err)
	}
	testmodel.New(t, st, blobs, testmodel.Options{Name: "a", Samples: 16})
	if c, err := training.CheckBucket(ctx, st, blobs); err != nil || c.Models != 1 || len(c.Missing) != 0 || c.Wrong() {
		t.Fatalf("backbone present: %+v, %v; want one model, nothing missing", c, err)
	}
	if err := blobs.Delete(ctx, training.BackboneKey(testmodel.BackboneName)); err != nil {
		t.Fatal(err)
	}
	c, err := training.CheckBucket(ctx, st, blobs)
	if err != nil || !c.Wrong() {
		t.Fatalf("backbone gone: %+v, %v; want a wrong bucket", c, err)
	}
	if got, want := c.String(), "1 of the ledger's 1 models use a backbone the bucket lacks: backbones/vit/model.onnx (used by a)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestBucketCheckWrong: a bucket is wrong only when it holds none of the models' backbones.
func TestBucketCheckWrong(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    training.BucketCheck
		want bool
		str  string
	}{
		{"no models", training.BucketCheck{}, false, ""},
		{"all present", training.BucketCheck{Models: 3, Missing: map[string][]string{}}, false, ""},
		{"some missing", training.BucketCheck{Models: 3, Missing: map[string][]string{"bert": {"b", "c"}}}, false,
			"2 of the ledger's 3 models use a backbone the bucket lacks: backbones/bert/model.onnx (used by b, c)"},
		{"all missing", training.BucketCheck{Models: 3, Missing: map[string][]string{"vit": {"a"}, "bert": {"b", "c"}}}, true,
			"3 of the ledger's 3 models use a backbone the bucket lacks: backbones/bert/model.onnx (used by b, c); backbones/vit/model.onnx (used by a)"},
	} {
		if got := tt.c.Wrong(); got != tt.want {
			t.Errorf("%s: Wrong() = %v, want %v", tt.name, got, tt.want)
		}
		if tt.str != "" && tt.c.String() != tt.str {
			t.Errorf("%s: String() = %q, want %q", tt.name, tt.c.String(), tt.str)
		}
	}
}
