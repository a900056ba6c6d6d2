package ort

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	onnx "github.com/yalue/onnxruntime_go"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 99, 5 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0, 1 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.d, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.d, tt.p, got, tt.want)
		}
	}
}

func TestBench(t *testing.T) {
	s := open(t, "affine")
	in, err := SyntheticInputs(s, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := in["x"].Shape; len(got) != 2 || got[0] != 8 || got[1] != 4 {
		t.Fatalf("synthetic x shape %v", got)
	}
	samples, err := Bench(ctx, s, in, 2, 20)
	if err != nil {
		t.Fatal(err)
	}
	sum := samples.Summary()
	if sum.Runs != 20 || len(samples.ORT) != 20 || sum.ORTP50 <= 0 || sum.TotalP50 < sum.ORTP50 || sum.TotalP99 < sum.TotalP50 || math.IsNaN(sum.Overhead) {
		t.Errorf("summary %+v", sum)
	}
	if _, err := Bench(ctx, s, in, 0, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("0 iterations: %v", err)
	}
	if _, err := SyntheticInputs(s, 0, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("batch 0: %v", err)
	}
	emb := open(t, "embed")
	if in, err := SyntheticInputs(emb, 3, 1); err != nil || in["ids"].DType() != Int64 {
		t.Errorf("int64 synthetic inputs: %v, %v", in, err)
	}
}

// BenchmarkRun runs the default backbone (assets/vit-fmnist.onnx) at batch 1 and 64 with the
// default session options. Besides ns/op (the wrapper's Run, wall time) it reports ort-ns/op,
// the part spent inside ONNX Runtime's Run, and overhead-%, the Go layer's cost relative to it,
// both measured on the same runs. The raw sub-benchmarks call onnxruntime_go on the same
// session with tensors made once, the floor any Go wrapper can reach.
func BenchmarkRun(b *testing.B) {
	s := openViT(b)
	for _, batch := range []int{1, 64} {
		in, err := SyntheticInputs(s, batch, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var st RunStats
			var total, inORT time.Duration
			for b.Loop() {
				if _, err := s.Run(ctx, in, RecordStats(&st)); err != nil {
					b.Fatal(err)
				}
				total += st.Total
				inORT += st.ORT
			}
			b.ReportMetric(float64(inORT.Nanoseconds())/float64(b.N), "ort-ns/op")
			b.ReportMetric(100*float64(total-inORT)/float64(inORT), "overhead-%")
		})
		b.Run(fmt.Sprintf("batch=%d/raw", batch), func(b *testing.B) {
			feeds, err := s.feeds(in, false)
			if err != nil {
				b.Fatal(err)
			}
			vin := make([]onnx.Value, len(feeds))
			for i, t := range feeds {
				if vin[i], err = toORT(t); err != nil {
					b.Fatal(err)
				}
			}
			defer destroy(vin)
			vout := make([]onnx.Value, len(s.outputs))
			if !s.allocOutputs(feeds, vout, make([]Tensor, len(s.outputs))) {
				b.Fatal("outputs not preallocated")
			}
			defer destroy(vout)
			for b.Loop() {
				if err := s.sess.Run(vin, vout); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
