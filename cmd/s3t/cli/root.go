// Package cli is the s3t command line: one cobra command per file, wired together in New.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// errUsage marks an error caused by how the command was called; Execute exits 2 for it.
var errUsage = errors.New("usage")

// New returns the root `s3t` command with every subcommand attached.
func New() *cobra.Command {
	root := &cobra.Command{
		Use:   "s3t",
		Short: "s3t: an exact-unlearning model server (S3T: sequence-aware sharded sliced training)",
		Long: `s3t fine-tunes frozen ONNX backbones with parameter-efficient modules trained shard by shard
and slice by slice, so that deleting a training sample switches off exactly the modules that saw it,
with no retraining on the request path.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newBackboneCmd(),
		newBenchCmd(),
		newSequencesCmd(),
		newSimulateCmd(),
		newDemoCmd(),
		newTrainCmd(),
		newEvalCmd(),
		newPluginCmd(),
		newServeCmd(),
		newWorkerCmd(),
		newMigrateCmd(),
		newModelsCmd(),
		newDeleteCmd(),
		newKeysCmd(),
	)
	return root
}

// Execute runs the command line args and returns the process exit code: 0 on success,
// 2 for a usage error, 1 otherwise.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	root := New()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %w", errUsage, err)
	})
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "s3t: %v\n", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}
