package adapters

import (
	"context"
	"fmt"
	"slices"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// Predictor serves checkpoints: ONNX Runtime runs the backbone with the PEFT rewrite spliced into groups
// G_1..G_stage (the checkpoint's PEFT parameters fed as inputs, lower groups off) up to the head's
// input, and the stage's linear head is applied in Go. It keeps one session per stage count.
// A Predictor is not safe for concurrent use; Close releases its sessions.
type Predictor struct {
	backbone *backbone.Model
	manifest *backbone.Manifest
	peft     PEFTType
	groups   [][]int
	head     string
	input    backbone.ValueInfo
	sessions map[int]*ort.Session
	params   map[int][]string
	threads  int
}

// NewPredictor returns a predictor for checkpoints of a backbone trained with the given PEFT type
// (a LoRA or a Planned), L slices and head input (default "features"). threads sets ONNX Runtime's
// intra-op threads (0: its default).
func NewPredictor(b *backbone.Model, man *backbone.Manifest, peft PEFTType, L int, headInput string, threads int) (*Predictor, error) {
	if peft == nil {
		return nil, fmt.Errorf("new predictor: %w: a PEFT type is required", ErrInvalidArgument)
	}
	groups, err := Groups(len(man.Blocks), L)
	if err != nil {
		return nil, fmt.Errorf("new predictor: %w", err)
	}
	if headInput == "" {
		headInput = "features"
	}
	ins := b.Inputs()
	if len(ins) != 1 {
		return nil, fmt.Errorf("new predictor: %w: the backbone must have one data input", ErrInvalidArgument)
	}
	return &Predictor{backbone: b, manifest: man, peft: peft, groups: groups, head: headInput, input: ins[0],
		sessions: map[int]*ort.Session{}, params: map[int][]string{}, threads: threads}, nil
}

// Close releases the ONNX Runtime sessions.
func (p *Predictor) Close() error {
	var first error
	for _, s := range p.sessions {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	clear(p.sessions)
	return first
}

func (p *Predictor) session(stage int) (*ort.Session, error) {
	if s, ok := p.sessions[stage]; ok {
		return s, nil
	}
	var blocks []int
	for _, g := range p.groups[:stage] {
		blocks = append(blocks, g...)
	}
	a, err := p.peft.Adapter(p.manifest, blocks...)
	if err != nil {
		return nil, err
	}
	spliced, err := p.backbone.Splice(a.Splices...)
	if err != nil {
		return nil, err
	}
	b, err := spliced.Bytes()
	if err != nil {
		return nil, err
	}
	opts := []ort.SessionOption{ort.WithOptionalInputs(a.Names()...), ort.WithOutputs(p.head)}
	if p.threads > 0 {
		opts = append(opts, ort.WithIntraOpThreads(p.threads))
	}
	s, err := ort.NewSession(b, opts...)
	if err != nil {
		return nil, err
	}
	p.sessions[stage], p.params[stage] = s, a.Names()
	return s, nil
}

// Logits returns the checkpoint's logits [n, classes] for x, the backbone's input for n examples,
// computed in batches of batch (default 256).
func (p *Predictor) Logits(ctx context.Context, c *Checkpoint, x ort.Tensor, batch int) (ort.Tensor, error) {
	stage := c.Manifest.Stage
	if stage < 1 || stage > len(p.groups) {
		return ort.Tensor{}, fmt.Errorf("predict: %w: checkpoint of stage %d for %d groups", ErrInvalidArgument, stage, len(p.groups))
	}
	if batch < 1 {
		batch = 256
	}
	s, err := p.session(stage)
	if err != nil {
		return ort.Tensor{}, fmt.Errorf("predict: %w", err)
	}
	feeds := map[string]ort.Tensor{}
	for _, name := range p.params[stage] {
		v, ok := c.Params[name]
		if !ok {
			return ort.Tensor{}, fmt.Errorf("predict: %w: checkpoint lacks %q", ErrInvalidArgument, name)
		}
		feeds[name] = v
	}
	w, errW := ort.Values[float32](c.Params[HeadWeight])
	bias, errB := ort.Values[float32](c.Params[HeadBias])
	if errW != nil || errB != nil || len(c.Params[HeadWeight].Shape) != 2 {
		return ort.Tensor{}, fmt.Errorf("predict: %w: checkpoint has no linear head", ErrInvalidArgument)
	}
	classes, features := int(c.Params[HeadWeight].Shape[0]), int(c.Params[HeadWeight].Shape[1])
	data, err := ort.Values[float32](x)
	if err != nil || len(x.Shape) < 1 || x.Shape[0] < 1 {
		return ort.Tensor{}, fmt.Errorf("predict: %w: x must be float32 [batch, ...]", ErrInvalidArgument)
	}
	n := int(x.Shape[0])
	row := len(data) / n
	out := make([]float32, 0, n*classes)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		shape := slices.Clone(x.Shape)
		shape[0] = int64(hi - lo)
		feeds[p.input.Name] = ort.NewTensor(data[lo*row:hi*row], shape...)
		res, err := s.Run(ctx, feeds)
		if err != nil {
			return ort.Tensor{}, fmt.Errorf("predict: %w", err)
		}
		f, err := ort.Values[float32](res[p.head])
		if err != nil || len(f) != (hi-lo)*features {
			return ort.Tensor{}, fmt.Errorf("predict: %w: head input %q has %d values for %d examples of %d features",
				ErrInvalidArgument, p.head, len(f), hi-lo, features)
		}
		for i := range hi - lo {
			fi := f[i*features : (i+1)*features]
			for k := range classes {
				z := float64(bias[k])
				wk := w[k*features : (k+1)*features]
				for j, v := range fi {
					z += float64(v) * float64(wk[j])
				}
				out = append(out, float32(z))
			}
		}
	}
	return ort.NewTensor(out, int64(n), int64(classes)), nil
}
