package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/backbone"
)

func newBackboneCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "backbone",
		Short: "Work with ONNX backbones",
	}
	c.AddCommand(newBackboneInspectCmd(), newBackboneCanonicalizeCmd())
	return c
}

// inspectReport is what `s3t backbone inspect --json` prints.
type inspectReport struct {
	File     string             `json:"file"`
	Info     backbone.Info      `json:"info"`
	Manifest *backbone.Manifest `json:"manifest,omitempty"`
	Error    string             `json:"manifest_error,omitempty"`
}

func newBackboneInspectCmd() *cobra.Command {
	var asJSON bool
	var manifestPath string
	c := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Describe an ONNX backbone: inputs, outputs, opsets, parameters, operators and its blocks",
		Long: `Describe an ONNX model: producer, opsets, inputs and outputs with element types and shapes,
initializers (count, parameters, bytes), an operator histogram, and the backbone manifest: its blocks
from bottom to top and, per block, the edges a PEFT type may rewrite (weights by role, the block
output, attention keys/values/scores).

The manifest is detected for Hugging Face ViT/BERT/RoBERTa naming, torch nn.TransformerEncoder and
plain layers.N/blocks.N models; --manifest gives a hand-written one instead (JSON, see the backbone
package's Manifest), which is completed from the graph and validated. A model without a detectable
block list is still described; the manifest error says what was found. External tensor data is read
relative to FILE.`,
		Example: `  s3t backbone inspect assets/vit-fmnist.onnx
  s3t backbone inspect model.onnx --manifest model.manifest.json --json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: inspect takes one FILE, got %d arguments", errUsage, len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			m, err := backbone.LoadFile(args[0])
			if err != nil {
				return err
			}
			rep := inspectReport{File: args[0], Info: m.Inspect()}
			var man *backbone.Manifest
			if manifestPath != "" {
				given, err := backbone.LoadManifest(manifestPath)
				if err != nil {
					return err
				}
				if man, err = backbone.ResolveManifest(m, given); err != nil {
					return fmt.Errorf("manifest %s: %w", manifestPath, err)
				}
			} else if man, err = backbone.DetectManifest(m); err != nil {
				rep.Error = err.Error()
			}
			rep.Manifest = man
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printInspect(c.OutOrStdout(), rep)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	c.Flags().StringVar(&manifestPath, "manifest", "", "use this hand-written manifest (JSON) instead of detecting one")
	return c
}

func printInspect(w io.Writer, rep inspectReport) error {
	info := rep.Info
	var opsets []string
	for _, o := range info.Opsets {
		d := o.Domain
		if d == "" {
			d = "ai.onnx"
		}
		opsets = append(opsets, fmt.Sprintf("%s %d", d, o.Version))
	}
	fmt.Fprintf(w, "file:       %s\n", rep.File)
	fmt.Fprintf(w, "producer:   %s\n", orDash(info.Producer))
	fmt.Fprintf(w, "ir version: %d\n", info.IRVersion)
	fmt.Fprintf(w, "opsets:     %s\n", strings.Join(opsets, ", "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title string, vs []backbone.ValueInfo) {
		if len(vs) == 0 {
			return
		}
		fmt.Fprintf(tw, "\n%s:\n", title)
		for _, v := range vs {
			fmt.Fprintf(tw, "  %s\t%v\t%v\n", v.Name, v.DType, v.Shape)
		}
	}
	section("inputs", info.Inputs)
	section("params (inputs with defaults)", info.Params)
	section("outputs", info.Outputs)
	st := info.Initializers
	fmt.Fprintf(tw, "\ninitializers: %d tensors, %d parameters, %s\n", st.Count, st.Parameters, humanBytes(st.Bytes))
	for _, v := range st.Largest {
		fmt.Fprintf(tw, "  %s\t%v\t%v\n", v.Name, v.DType, v.Shape)
	}
	fmt.Fprintf(tw, "\noperators: %d nodes\n", info.Nodes)
	for _, o := range info.Ops {
		fmt.Fprintf(tw, "  %s\t%d\n", o.Op, o.Count)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(info.Functions) > 0 {
		fmt.Fprintf(w, "\nlocal functions: %s\n", strings.Join(info.Functions, ", "))
	}
	fmt.Fprintln(w)
	if rep.Manifest == nil {
		fmt.Fprintf(w, "manifest: none: %s\n", rep.Error)
		return nil
	}
	man := rep.Manifest
	fmt.Fprintf(w, "manifest: %d blocks, %s (%s)", len(man.Blocks), man.Family, man.Source)
	if man.Container != "" {
		fmt.Fprintf(w, " under %s", man.Container)
	}
	fmt.Fprintln(w)
	for _, b := range man.Blocks {
		fmt.Fprintf(w, "  block %d: %s\n", b.Index, b.Name)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if b.Input != "" {
			fmt.Fprintf(tw, "    input\t%s\n", b.Input)
		}
		for _, e := range b.Edges {
			detail := []string{e.DType.String(), e.Shape.String()}
			if e.Layout != "" {
				detail = append(detail, string(e.Layout))
			}
			if e.Slice != nil {
				detail = append(detail, fmt.Sprintf("slice axis %d [%d:%d]", e.Slice.Axis, e.Slice.Start, e.Slice.End))
			}
			if e.Param != "" && e.Param != e.Tensor {
				detail = append(detail, "param "+e.Param)
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", e.Role, e.Tensor, strings.Join(detail, " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range man.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// canonicalizeReport is what `s3t backbone canonicalize --json` prints.
type canonicalizeReport struct {
	In     string                   `json:"in"`
	Out    string                   `json:"out"`
	Report backbone.CanonicalReport `json:"report"`
	// Blocks and Family describe the manifest found on the canonical graph; ManifestError says
	// why none was found.
	Blocks        int    `json:"blocks,omitempty"`
	Family        string `json:"family,omitempty"`
	ManifestError string `json:"manifest_error,omitempty"`
}

func newBackboneCanonicalizeCmd() *cobra.Command {
	var (
		batch        int64
		manifestPath string
		noVerify     bool
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "canonicalize IN OUT",
		Short: "Rewrite an ONNX backbone into canonical form: constants folded, packed q/k/v split",
		Long: `Rewrite the ONNX model IN into an equivalent canonical graph and write it to OUT.

Raw PyTorch exports compute shapes at run time (Shape/Gather/Concat chains) and keep the query, key
and value projections of nn.MultiheadAttention packed in one in_proj_weight split by Slice. The
training import runs such graphs wrongly; it runs the canonical graph, in which:
  - packed q/k/v weights are three initializers ("<param>.query", ".key", ".value"), each with its
    own MatMul and bias, so that PEFT can target them;
  - everything that depends only on stored tensors (shape arithmetic, Constant nodes, transposed
    weights) is computed once by ONNX Runtime and stored; a weight read through a Transpose is
    stored transposed under its own name;
  - with --batch N, the batch dimension is fixed to N and all shape arithmetic folds; without it,
    Reshape targets that depend on the batch become constants with -1.

The manifest (detected, or --manifest FILE) names the packed weights. Unless --no-verify, the
original and the canonical model run through ONNX Runtime on the same seeded random input and must
agree within 1e-5 relative to the output's magnitude. Prints what changed.`,
		Example: `  s3t backbone canonicalize backbone/testdata/torch-encoder.onnx encoder.canonical.onnx --batch 8
  s3t backbone canonicalize model.onnx model.canonical.onnx --manifest model.manifest.json --json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("%w: canonicalize takes IN and OUT, got %d arguments", errUsage, len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			m, err := backbone.LoadFile(args[0])
			if err != nil {
				return err
			}
			rep := canonicalizeReport{In: args[0], Out: args[1]}
			opts := []backbone.CanonicalOption{backbone.WithReport(&rep.Report), backbone.WithVerify(!noVerify)}
			if c.Flags().Changed("batch") {
				opts = append(opts, backbone.PinBatch(batch))
			}
			var hand *backbone.Manifest
			if manifestPath != "" {
				if hand, err = backbone.LoadManifest(manifestPath); err != nil {
					return err
				}
				opts = append(opts, backbone.WithManifest(hand))
			}
			out, err := m.Canonicalize(c.Context(), opts...)
			if err != nil {
				if errors.Is(err, backbone.ErrInvalidOption) {
					return fmt.Errorf("%w: %w", errUsage, err)
				}
				return err
			}
			if err := out.WriteFile(args[1]); err != nil {
				return err
			}
			var man *backbone.Manifest
			if hand != nil {
				man, err = backbone.ResolveManifest(out, hand)
			} else {
				man, err = backbone.DetectManifest(out)
			}
			if err != nil {
				rep.ManifestError = err.Error()
			} else {
				rep.Blocks, rep.Family = len(man.Blocks), man.Family
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printCanonicalize(c.OutOrStdout(), rep)
		},
	}
	c.Flags().Int64Var(&batch, "batch", 0, "fix the batch dimension to N (default: keep it symbolic)")
	c.Flags().StringVar(&manifestPath, "manifest", "", "unpack the packed weights this hand-written manifest (JSON) names, instead of detecting them")
	c.Flags().BoolVar(&noVerify, "no-verify", false, "skip running both models through ONNX Runtime to compare their outputs")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return c
}

func printCanonicalize(w io.Writer, rep canonicalizeReport) error {
	r := rep.Report
	fmt.Fprintf(w, "canonicalized %s -> %s\n", rep.In, rep.Out)
	fmt.Fprintf(w, "nodes:    %d -> %d\n", r.NodesBefore, r.NodesAfter)
	if r.Batch > 0 {
		was := ""
		if len(r.BatchDims) > 0 {
			was = " (was " + strings.Join(r.BatchDims, ", ") + ")"
		}
		fmt.Fprintf(w, "batch:    pinned to %d%s\n", r.Batch, was)
	} else {
		fmt.Fprintf(w, "batch:    symbolic\n")
	}
	if len(r.Unpacked) > 0 {
		fmt.Fprintf(w, "unpacked: %d packed weights: %s\n", len(r.Unpacked), strings.Join(r.Unpacked, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Split) > 0 {
		fmt.Fprintf(tw, "split:    %d packed projection slices, one MatMul each\n", len(r.Split))
		for _, s := range r.Split {
			wb := s.Weight
			if s.Bias != "" {
				wb += " + " + s.Bias
			}
			fmt.Fprintf(tw, "  %s\t%s\n", s.Slice, wb)
		}
	}
	renamed := 0
	for _, f := range r.Folded {
		if f.Was != "" {
			renamed++
		}
	}
	fmt.Fprintf(tw, "folded:   %d values into initializers, %d of them under their parameter's name\n", len(r.Folded), renamed)
	for _, f := range r.Folded {
		if f.Was != "" {
			fmt.Fprintf(tw, "  %s\t%v\t%v\twas %s (%s)\n", f.Name, f.DType, backbone.ShapeOf(f.Shape...), f.Was, f.Op)
		}
	}
	if len(r.Relaxed) > 0 {
		fmt.Fprintf(tw, "relaxed:  %d Reshape targets computed from the batch, now constants with -1\n", len(r.Relaxed))
	}
	before := map[string]int{}
	for _, o := range r.OpsBefore {
		before[o.Op] = o.Count
	}
	after := map[string]int{}
	for _, o := range r.OpsAfter {
		after[o.Op] = o.Count
	}
	fmt.Fprintf(tw, "ops changed:\n")
	for _, o := range r.OpsBefore {
		if after[o.Op] != o.Count {
			fmt.Fprintf(tw, "  %s\t%d -> %d\n", o.Op, o.Count, after[o.Op])
		}
	}
	for _, o := range r.OpsAfter {
		if _, ok := before[o.Op]; !ok {
			fmt.Fprintf(tw, "  %s\t0 -> %d\n", o.Op, o.Count)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "left computed: %s\n", s)
	}
	if r.Verified {
		fmt.Fprintf(w, "verified: max difference %.3g relative to the output's magnitude (tolerance %g)\n", r.MaxDiff, backbone.CanonicalTolerance)
	} else {
		fmt.Fprintf(w, "verified: no (--no-verify)\n")
	}
	if rep.ManifestError != "" {
		fmt.Fprintf(w, "manifest: none on the canonical graph: %s\n", rep.ManifestError)
	} else {
		fmt.Fprintf(w, "manifest: %d blocks on the canonical graph (%s)\n", rep.Blocks, rep.Family)
	}
	return nil
}
