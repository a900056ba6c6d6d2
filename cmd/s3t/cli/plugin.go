package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
)

func newPluginCmd() *cobra.Command {
	var dataDir, pluginDir string
	c := &cobra.Command{
		Use:   "plugin",
		Short: "List, install and run plugins (PEFT types and sequence selectors)",
		Long: `PEFT types and sequence selectors are plugins: processes that s3t starts and talks to over gRPC
(hashicorp/go-plugin). The built-ins (peft.lora, peft.prefix, peft.adapter, selector.cyclic,
selector.bms, selector.random) ship inside this binary and run as ` + "`s3t plugin run NAME`" + `; third-party
plugins are binaries installed into the plugin directory, whose SHA-256 is recorded at install and
checked before every start.

Environment:
` + envHelp(),
	}
	c.PersistentFlags().StringVar(&dataDir, "data", "", "data directory (default $"+plugins.EnvData+" or ./"+plugins.DefaultDataDir+")")
	c.PersistentFlags().StringVar(&pluginDir, "plugin-dir", "", "plugin directory (default $"+plugins.EnvPluginDir+" or DATA/plugins)")
	open := func(c *cobra.Command) (*plugins.Manager, error) {
		d := dataDir
		if d == "" {
			d = plugins.DataDir()
		}
		p := pluginDir
		if p == "" {
			p = plugins.PluginDir(d)
		}
		return plugins.Open(plugins.Config{DataDir: d, Dir: p, Logger: slog.Default()})
	}
	c.AddCommand(newPluginListCmd(open), newPluginInstallCmd(open), newPluginRunCmd())
	return c
}

func envHelp() string {
	s := ""
	for _, e := range plugins.Env {
		s += fmt.Sprintf("  %-16s %s\n", e.Name, e.Description)
	}
	return s
}

type openManager func(*cobra.Command) (*plugins.Manager, error)

func newPluginListCmd(open openManager) *cobra.Command {
	var asJSON, check bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the built-in and installed plugins: name, kind, version, protocol, checksum, status",
		Long: `List every plugin: the built-ins, the plugins installed in the plugin directory, and files in that
directory that were never installed (which s3t does not run). Nothing is started unless --check is
given; then each plugin is started, asked what it is, and its negotiated protocol and any error are
shown, and the command exits 1 when a plugin failed its check (a changed binary among them).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := open(c)
			if err != nil {
				return err
			}
			defer m.Close()
			ents, err := m.List(c.Context())
			if err != nil {
				return err
			}
			failed := 0
			if check {
				failed = checkEntries(c.Context(), m, ents)
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Dir     string          `json:"plugin_dir"`
					Plugins []plugins.Entry `json:"plugins"`
				}{m.Dir(), ents}); err != nil {
					return err
				}
			} else {
				printPlugins(c.OutOrStdout(), m.Dir(), ents)
			}
			if failed > 0 { // so that --check can gate a deployment
				return fmt.Errorf("plugin list --check: %d plugin(s) failed their check (STATUS error, tampered or missing)", failed)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&check, "check", false, "start every plugin and ask it what it is")
	return c
}

// checkEntries starts each runnable plugin and records what it says, or why it failed; it
// returns how many failed (a plugin whose checksum no longer matches among them).
func checkEntries(ctx context.Context, m *plugins.Manager, ents []plugins.Entry) (failed int) {
	for i := range ents {
		e := &ents[i]
		if e.Status == plugins.StatusTampered || e.Status == plugins.StatusMissing {
			failed++ // an installed plugin that cannot start
			continue
		}
		if e.Name == "" || (e.Status != plugins.StatusReady && e.Status != plugins.StatusRunning) {
			continue
		}
		cl, err := m.Client(e.Name)
		if err == nil {
			var info *sdk.Info
			if info, err = cl.Info(ctx); err == nil {
				e.Status, e.Kind, e.Version, e.Protocol = plugins.StatusRunning, info.Kind, info.Version, cl.Protocol()
				continue
			}
		}
		e.Status, e.Detail = "error", err.Error()
		failed++
	}
	return failed
}

func printPlugins(w io.Writer, dir string, ents []plugins.Entry) {
	fmt.Fprintf(w, "plugin directory %s\n", dir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tPROTOCOL\tSHA256\tSTATUS\tBINARY")
	for _, e := range ents {
		name, sum, proto, src := e.Name, e.SHA256, "", e.Path
		if name == "" {
			name = "-"
		}
		if len(sum) > 12 {
			sum = sum[:12]
		}
		if e.Protocol > 0 {
			proto = strconv.Itoa(e.Protocol)
		}
		if e.Builtin {
			src = "built-in"
		}
		status := string(e.Status)
		if e.Detail != "" {
			status += ": " + e.Detail
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, e.Kind, e.Version, proto, sum, status, src)
	}
	tw.Flush()
}

func newPluginInstallCmd(open openManager) *cobra.Command {
	var replace bool
	c := &cobra.Command{
		Use:   "install PATH",
		Short: "Install a plugin binary into the plugin directory, recording its SHA-256",
		Long: `Start the plugin binary at PATH once to ask what it is (name, kind, version, protocol), copy it into the
plugin directory under its name, and record its SHA-256 in the catalog. s3t checks that checksum before
every start and refuses a binary that changed. A name that a built-in or an installed plugin has is
refused unless --replace upgrades the installed one.`,
		Example: "  s3t plugin install ./bin/ia3",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := open(c)
			if err != nil {
				return err
			}
			defer m.Close()
			var opts []plugins.InstallOption
			if replace {
				opts = append(opts, plugins.Replace())
			}
			e, err := m.Install(c.Context(), args[0], opts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "installed %s %s (%s plugin, protocol %d) at %s\nsha256 %s\n",
				e.Name, e.Version, e.Kind, e.Protocol, e.Path, e.SHA256)
			return nil
		},
	}
	c.Flags().BoolVar(&replace, "replace", false, "replace an installed plugin of the same name")
	return c
}

func newPluginRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run NAME",
		Short: "Serve a built-in plugin to the s3t host that started this process (plugin mode)",
		Long: `Serve the built-in plugin NAME over go-plugin. The s3t host runs its own executable this way for each
built-in, so that built-ins run out of process exactly like third-party plugins. Run by hand, it
explains that it must be started by a host and exits.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := plugins.ServeBuiltin(args[0]); err != nil {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			return nil
		},
	}
}
