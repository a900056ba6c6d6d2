package adapters

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/s3t-dev/s3t/plugins/adapter"
	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/plugins/prefix"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// planned returns the built-in plugin's plan for the ViT, in process, as a Planned.
func planned(t testing.TB, name string, p sdk.PEFT, config string) Planned {
	t.Helper()
	_, man := vit(t)
	plan, err := p.Plan(context.Background(), &sdk.PlanRequest{Manifest: *man, Config: []byte(config)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ValidatePlan(man, plan); err != nil {
		t.Fatal(err)
	}
	return Planned{Plugin: name, Plan: plan}
}

// builtinPEFTs are the three built-in PEFT types, small.
func builtinPEFTs(t testing.TB) []Planned {
	return []Planned{
		planned(t, "peft.lora", lora.New(), `{"rank": 4}`),
		planned(t, "peft.prefix", prefix.New(), `{"tokens": 4}`),
		planned(t, "peft.adapter", adapter.New(), ``),
	}
}

// TestPlannedAdapter checks that a plan's Adapter holds exactly the rewrites and parameters of the
// requested blocks, named as backbone.SplicePlan names them, and that dropout is refused.
func TestPlannedAdapter(t *testing.T) {
	_, man := vit(t)
	for _, p := range builtinPEFTs(t) {
		t.Run(p.Plugin, func(t *testing.T) {
			a, err := p.Adapter(man, 2, 3)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, ps := range p.Plan.Params(p.Plugin) {
				if ps.Block >= 2 {
					want = append(want, ps.Name)
				}
			}
			if got := a.Names(); len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("params %v, want %v", got, want)
			}
			for _, q := range a.Params {
				if q.Init.Dist == nil || q.Init.Dist.Validate() != nil {
					t.Errorf("%s: init %+v", q.Name, q.Init)
				}
			}
			if _, err := p.Adapter(man, len(man.Blocks)); err == nil {
				t.Error("a block out of range was accepted")
			}
		})
	}
	drop := planned(t, "peft.lora", lora.New(), `{"dropout": 0.1}`)
	if _, err := drop.Adapter(man, 3); err == nil {
		t.Error("a plan with dropout was accepted")
	}
}

// TestPlannedShardExactness runs TestShardExactness's deletion check for each built-in PEFT type
// through the one training path: train a shard (L = 2, B = 2 cyclic), delete a sample, and check
// that the served checkpoint equals, bit for bit, the stage retrained from scratch without it, and
// that the sample is gone from the activation cache.
func TestPlannedShardExactness(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	const L, B = 2, 2
	ctx := context.Background()
	data := shardData(t, 64, L)
	seqs, err := unlearning.Select(ctx, mustSelector(t, "cyclic"), &sdk.SelectRequest{Slices: L, Budget: B})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range builtinPEFTs(t) {
		t.Run(p.Plugin, func(t *testing.T) {
			cache := NewMemoryCache()
			s := newShardTrainer(t, ShardConfig{PEFT: p, Slices: L, Seed: 5, Cache: cache})
			cks, err := s.TrainShard(ctx, 0, seqs, data)
			if err != nil {
				t.Fatal(err)
			}
			if typ := cks[0][0].Manifest.PEFT.Type; typ != p.Plugin {
				t.Errorf("checkpoint records PEFT type %q", typ)
			}
			// Training moved the PEFT parameters of G_1 away from their init.
			moved := false
			for _, q := range s.Adapter(1).Params {
				init, _ := q.Init.Dist.Sample(q.Name, q.Shape, sdk.SeedFor(cks[0][0].Manifest.Seed, q.Name))
				if !reflect.DeepEqual(cks[0][0].Params[q.Name].Data, init.Float32) {
					moved = true
				}
			}
			if !moved {
				t.Error("no PEFT parameter of G_1 was trained")
			}
			// Export: the Hugging Face PEFT layout for LoRA, safetensors and manifest for the others.
			exp := t.TempDir()
			if err := Export(exp, cks[0][1]); err != nil {
				t.Fatal(err)
			}
			wantFile := CheckpointManifestFile
			if p.Plugin == "peft.lora" {
				wantFile = "adapter_config.json"
			}
			for _, f := range []string{"adapter_model.safetensors", wantFile} {
				if _, err := os.Stat(filepath.Join(exp, f)); err != nil {
					t.Errorf("export: %v", err)
				}
			}
			shard, err := unlearning.NewShard(seqs)
			if err != nil {
				t.Fatal(err)
			}
			slice := seqs[0][1]
			victim := data[slice][0].ID
			if _, err := shard.Delete(slice); err != nil {
				t.Fatal(err)
			}
			s.Purge(victim)
			if cache.Has(victim) {
				t.Errorf("%s is still in the activation cache", victim)
			}
			served := shard.Served()
			if served.Length < 1 || slices.Contains(shard.LivePrefix(served.Sequence), slice) {
				t.Fatalf("served prefix %v contains slice %d", shard.LivePrefix(served.Sequence), slice)
			}
			remaining := make([][]Example, L)
			for j := range data {
				for _, e := range data[j] {
					if e.ID != victim {
						remaining[j] = append(remaining[j], e)
					}
				}
			}
			fresh := newShardTrainer(t, ShardConfig{PEFT: p, Slices: L, Seed: 5})
			again, err := fresh.TrainSequence(ctx, 0, served.Sequence, seqs[served.Sequence], remaining, served.Length)
			if err != nil {
				t.Fatal(err)
			}
			got, want := cks[served.Sequence][served.Length-1], again[served.Length-1]
			sameBits(t, "served checkpoint vs retrained from scratch", got.Params, want.Params)
			if got.Manifest.key() != want.Manifest.key() {
				t.Errorf("manifests differ:\n%s\n%s", got.Manifest.key(), want.Manifest.key())
			}
			// Teeth: the stage that saw the deleted sample differs when retrained without it.
			bad, err := fresh.TrainSequence(ctx, 0, 0, seqs[0], remaining, 2)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(bad[1].Params, cks[0][1].Params) {
				t.Error("C[0,0,2] trained without the deleted sample equals the one trained with it")
			}
		})
	}
}
