// Package cli is the s3t command line: one cobra command per file, wired together in New.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/buildinfo"
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
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var logFormat, logLevel string
	root.PersistentFlags().StringVar(&logFormat, "log-format", env("S3T_LOG_FORMAT"), "log records as text or json, one a line (S3T_LOG_FORMAT)")
	root.PersistentFlags().StringVar(&logLevel, "log-level", env("S3T_LOG_LEVEL"), "the least level logged: debug, info, warn or error (S3T_LOG_LEVEL)")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		h, err := logHandler(c.ErrOrStderr(), logFormat, logLevel)
		if err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		slog.SetDefault(slog.New(h))
		return nil
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
		newDataCmd(),
	)
	return root
}

// logHandler returns the handler of the process's log records: text or json lines on w, from
// level on (debug, info, warn or error; any case).
func logHandler(w io.Writer, format, level string) (slog.Handler, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil || strings.ContainsAny(level, "+-") {
		return nil, fmt.Errorf("--log-level (or S3T_LOG_LEVEL) %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		// A duration as the text records write it ("1.295s"), not JSON's bare nanoseconds
		// ("timeout":30000000000), which named no unit.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format (or S3T_LOG_FORMAT) %q: want text or json", format)
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
	// The commands cobra adds itself (help, completion) get the same treatment.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	helpTopics(root)
	usageArgs(root)
	if err := root.ExecuteContext(ctx); err != nil {
		code := 1
		if errors.Is(err, errUsage) {
			code = 2
		}
		var hint string
		if e := (*api.Error)(nil); errors.As(err, &e) && e.Code == api.CodeUnauthorized {
			hint = "give the server's API key with --api-key or S3T_API_KEY"
		}
		if _, ok := slog.Default().Handler().(*slog.JSONHandler); ok {
			// With --log-format json the line that says why the process ended is a record too:
			// a plain line was the one a log pipeline could not parse.
			attrs := []any{"err", err.Error(), "exit_code", code}
			if hint != "" {
				attrs = append(attrs, "hint", hint)
			}
			slog.Error("s3t: "+err.Error(), attrs...)
			return code
		}
		fmt.Fprintf(stderr, "s3t: %v\n", err)
		if hint != "" {
			fmt.Fprintln(stderr, "s3t: "+hint)
		}
		return code
	}
	return 0
}

// usageArgs makes every argument error of the tree under c a usage error (exit 2), as flag
// errors are: it wraps each command's Args validator, and gives each command group (a command
// with subcommands and nothing to run, the root included) a validator that refuses an unknown
// subcommand and a RunE that prints its help, as cobra does for a group called alone. (Cobra
// reports an unknown command of the root from Find, and shows a group's help for any
// arguments, exit 0; neither passes through the Args validators.)
func usageArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
	if !c.Runnable() && c.HasSubCommands() {
		c.Args = unknownSubcommand
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		return
	}
	if c.Args == nil {
		return
	}
	validate := c.Args
	c.Args = func(c *cobra.Command, args []string) error {
		err := validate(c, args)
		if err == nil {
			// No command takes an empty argument: an empty model name or sample id reached the
			// server as another route (a 405, or a bare 404).
			for i, a := range args {
				if a == "" {
					err = fmt.Errorf("argument %d is empty", i+1)
				}
			}
		}
		if err == nil || errors.Is(err, errUsage) {
			return err
		}
		return fmt.Errorf("%w: %w\nRun '%s --help' for usage.", errUsage, err, c.CommandPath())
	}
}

// helpTopics makes cobra's help command refuse a topic that names no command, as a usage error:
// cobra printed the root's help and exited 0.
func helpTopics(root *cobra.Command) {
	help, _, err := root.Find([]string{"help"})
	if err != nil || help == root {
		return
	}
	run := help.Run
	help.Run = nil
	help.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			if cmd, rest, err := root.Find(args); err != nil || cmd == root || len(rest) > 0 {
				return fmt.Errorf("%w: unknown help topic %q\nRun '%s --help' for usage.", errUsage, strings.Join(args, " "), root.CommandPath())
			}
		}
		run(c, args)
		return nil
	}
}

// unknownSubcommand refuses any argument of a command group with cobra's message for an
// unknown command, suggestions included.
func unknownSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return fmt.Errorf("%w: %s\nRun '%s --help' for usage.", errUsage, msg, c.CommandPath())
}
