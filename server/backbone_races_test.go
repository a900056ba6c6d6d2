package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/training"
)

// TestBackboneRaces sends what may interleave at the same time, round after round: a model's
// creation on a backbone with the backbone's deletion, and two registrations of one name with
// other bytes. Both creation and deletion succeeded together in 2 of 8 tries before (a model
// whose training and predictions then failed on a missing file), and both registrations in 1
// of 8 (the first client told its file was stored, the second's stored). Now one of the two
// loses, and the ledger and the blobs agree after every round. "replicas" runs the creations
// and the deletions on two servers over one ledger and bucket, as replicas are: each server
// serializes its own backbone work, so only the checks after each write keep them apart.
func TestBackboneRaces(t *testing.T) {
	if testing.Short() {
		t.Skip("plans a model per round")
	}
	vit := assets.ViTFashionMNIST()
	// Other bytes of the same model: an unknown protobuf field (number 99, one byte) appended.
	other := append(slices.Clone(vit), 0x9a, 0x06, 0x01, 'x')
	for _, replicas := range []bool{false, true} {
		t.Run(map[bool]string{false: "one server", true: "replicas"}[replicas], func(t *testing.T) {
			st, blobs := testmodel.OpenStore(t)
			a := startServer(t, server.Config{DisableRuntime: true, Store: st, Blobs: blobs}, nil)
			b := a
			if replicas {
				b = startServer(t, server.Config{DisableRuntime: true, Store: st, Blobs: blobs}, nil)
			}
			ca, cb := a.client(t, ""), b.client(t, "")
			ctx := context.Background()
			const rounds = 12
			var createWon, deleteWon int
			for i := range rounds {
				bb, model := fmt.Sprint("bb", i), fmt.Sprint("m", i)
				if _, err := ca.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: bb, ONNX: vit}); err != nil {
					t.Fatal(err)
				}
				var createErr, deleteErr error
				var wg sync.WaitGroup
				wg.Go(func() {
					_, createErr = ca.CreateModel(ctx, &api.CreateModelRequest{Name: model, ModelSpec: api.ModelSpec{Backbone: bb,
						Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}})
				})
				wg.Go(func() {
					// The deletion starts 0 to 11 ms after the creation, which takes about as long
					// to plan the model: so rounds land it before, during and after the planning.
					time.Sleep(time.Duration(i) * time.Millisecond)
					_, deleteErr = cb.DeleteBackbone(ctx, &api.DeleteBackboneRequest{Name: bb})
				})
				wg.Wait()
				switch {
				case createErr == nil && deleteErr == nil:
					t.Fatalf("round %d: the model was created and its backbone deleted", i)
				case createErr == nil:
					createWon++
					wantError(t, deleteErr, 409, api.CodeConflict)
				case deleteErr == nil:
					deleteWon++
					var e *api.Error
					if !errors.As(createErr, &e) || (e.Status != 400 && e.Status != 409) {
						t.Fatalf("round %d: creation refused with %v", i, createErr)
					}
				}
				// The ledger and the blobs agree: a model's backbone is there, with the bytes it
				// was planned on, and a deleted backbone's file is gone.
				m, err := st.GetModel(ctx, model)
				if (err == nil) != (createErr == nil) {
					t.Fatalf("round %d: model after its creation answered %v: %v", i, createErr, err)
				}
				got, err := blobs.Get(ctx, training.BackboneKey(bb))
				if (err == nil) != (deleteErr != nil) {
					t.Fatalf("round %d: backbone file after its deletion answered %v: %v", i, deleteErr, err)
				}
				if m != nil {
					var rec training.Record
					if err := json.Unmarshal(m.Config, &rec); err != nil {
						t.Fatal(err)
					}
					if sum := sha256.Sum256(got); rec.BackboneSHA256 != hex.EncodeToString(sum[:]) {
						t.Fatalf("round %d: the model's backbone file is not the one it was planned on", i)
					}
					if _, err := cb.GetBackbone(ctx, &api.GetBackboneRequest{Name: bb}); err != nil {
						t.Fatalf("round %d: the model's backbone: %v", i, err)
					}
				}

				// Two registrations of one name with other bytes: one of them is refused, and
				// the stored file is the one whose registration succeeded.
				name := fmt.Sprint("reg", i)
				var errs [2]error
				var ok [2]*api.Backbone
				for j, data := range [][]byte{vit, other} {
					wg.Go(func() {
						ok[j], errs[j] = ca.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: name, ONNX: data})
					})
				}
				wg.Wait()
				if (errs[0] == nil) == (errs[1] == nil) {
					t.Fatalf("round %d: registrations of other bytes under one name: %v, %v", i, errs[0], errs[1])
				}
				won := 0
				if errs[0] != nil {
					won = 1
				}
				wantError(t, errs[1-won], 409, api.CodeConflict)
				stored, err := blobs.Get(ctx, training.BackboneKey(name))
				if err != nil {
					t.Fatal(err)
				}
				if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != ok[won].SHA256 {
					t.Fatalf("round %d: the stored file is not the one of the registration that succeeded", i)
				}
			}
			t.Logf("%d rounds: the creation won %d, the deletion %d", rounds, createWon, deleteWon)
		})
	}
}
