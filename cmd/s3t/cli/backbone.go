package cli

import (
	"encoding/json"
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
	c.AddCommand(newBackboneInspectCmd())
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
