package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
)

func newPluginCmd() *cobra.Command {
	var dataDir, pluginDir string
	c := &cobra.Command{
		Use:   "plugin",
		Short: "List, describe, install, remove and run plugins (PEFT types and sequence selectors)",
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
	c.AddCommand(newPluginListCmd(open), newPluginDescribeCmd(open), newPluginInstallCmd(open), newPluginRemoveCmd(open), newPluginRunCmd())
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
		Short: "List the built-in and installed plugins: name, kind, version, protocol, SDK, checksum, status",
		Long: `List every plugin: the built-ins, the plugins installed in the plugin directory, and files in that
directory that were never installed (which s3t does not run). Nothing is started unless --check is
given; then each plugin is started, asked what it is, and its negotiated protocol, the SDK version
it was built with and any error are shown, and the command exits 1, naming them, when plugins
failed their check (a changed binary among them). Without --check, the SDK version is known for
the built-ins only (this binary's).

STATUS is one of:
  ready          it can start (an installed plugin's binary matches its recorded SHA-256)
  running        a process of it runs: with --check, the one the check started and that answered
  error          (--check) it did not start or answer; the first line of why is in the table,
                 the whole of it after the table
  tampered       the binary no longer matches the SHA-256 recorded at install; it will not run
  missing        the catalog names a binary that is gone
  shadowed       an installed plugin has a built-in's name; the built-in wins
  not installed  a file in the plugin directory with no catalog record; s3t does not run it`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := open(c)
			if err != nil {
				return err
			}
			defer m.Close()
			listed, err := m.List(c.Context())
			if err != nil {
				return err
			}
			ents := make([]listEntry, len(listed))
			for i, e := range listed {
				ents[i].Entry = e
				if e.Builtin { // compiled into this binary, with this SDK
					ents[i].SDKVersion = sdk.Version
				}
			}
			var failed []string
			if check {
				failed = checkEntries(c.Context(), m, ents)
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Dir     string      `json:"plugin_dir"`
					Plugins []listEntry `json:"plugins"`
				}{m.Dir(), ents}); err != nil {
					return err
				}
			} else {
				printPlugins(c.OutOrStdout(), m.Dir(), ents)
			}
			if len(failed) > 0 { // so that --check can gate a deployment
				return fmt.Errorf("plugin list --check: %d plugin(s) failed their check: %s", len(failed), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&check, "check", false, "start every plugin and ask it what it is")
	return c
}

// listEntry is a plugin as `plugin list` shows it: the host's Entry and, when known, the SDK
// version the plugin was built with.
type listEntry struct {
	plugins.Entry
	// SDKVersion is the version of the SDK the plugin was built with: the built-ins', or what
	// the plugin said when --check started it.
	SDKVersion string `json:"sdk_version,omitempty"`
}

// statusError is the STATUS of a plugin that failed its --check start.
const statusError plugins.Status = "error"

// checkEntries starts each runnable plugin and records what it says, or why it failed; it
// returns the names of those that failed, with their status (a plugin whose checksum no longer
// matches among them).
func checkEntries(ctx context.Context, m *plugins.Manager, ents []listEntry) (failed []string) {
	for i := range ents {
		e := &ents[i]
		if e.Status == plugins.StatusTampered || e.Status == plugins.StatusMissing {
			failed = append(failed, fmt.Sprintf("%s (%s)", e.Name, e.Status)) // installed, cannot start
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
				e.SDKVersion = info.SDKVersion
				continue
			}
		}
		e.Status, e.Detail = statusError, err.Error()
		failed = append(failed, fmt.Sprintf("%s (%s)", e.Name, e.Status))
	}
	return failed
}

// printPlugins prints the table; a detail of several lines (go-plugin's start errors) would
// break its rows, so the table has its first line and the whole follows the table.
func printPlugins(w io.Writer, dir string, ents []listEntry) {
	fmt.Fprintf(w, "plugin directory %s\n", dir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tPROTOCOL\tSDK\tSHA256\tSTATUS\tBINARY")
	var long []listEntry
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
			first, _, multi := strings.Cut(strings.TrimSpace(e.Detail), "\n")
			status += ": " + strings.TrimSpace(first)
			if multi {
				status += " (more below)"
				long = append(long, e)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, e.Kind, e.Version, proto, e.SDKVersion, sum, status, src)
	}
	tw.Flush()
	for _, e := range long {
		name := e.Name
		if name == "" {
			name = e.Path
		}
		fmt.Fprintf(w, "\n%s: %s\n", name, strings.TrimSpace(e.Detail))
	}
}

// pluginDescription is what `plugin describe` prints: what the plugin says of itself (Info, and
// a PEFT plugin's Describe: its config schema and defaults) and what the host knows of it.
type pluginDescription struct {
	Name        string   `json:"name"`
	Kind        sdk.Kind `json:"kind"`
	Version     string   `json:"version"`
	SDKVersion  string   `json:"sdk_version,omitempty"`
	Protocol    int      `json:"protocol"`
	Description string   `json:"description,omitempty"`
	Builtin     bool     `json:"builtin"`
	Path        string   `json:"path"`
	SHA256      string   `json:"sha256"`
	// ConfigSchema and Defaults are a PEFT plugin's: the JSON Schema of the config a model's
	// peft.config gives it, and the values of the fields a config leaves out.
	ConfigSchema json.RawMessage `json:"config_schema,omitempty"`
	Defaults     json.RawMessage `json:"defaults,omitempty"`
}

func newPluginDescribeCmd(open openManager) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Start a plugin and print what it says of itself: version, SDK version, config schema and defaults (JSON)",
		Long: `Start the plugin NAME (a built-in or an installed plugin, checking its SHA-256 as every start does) and
print, as JSON, its name, kind, version, the SDK version it was built with, the negotiated protocol,
its description, its binary and SHA-256, and for a PEFT plugin the JSON Schema of the config a
model's peft.config gives it and its defaults (the values of the fields a config leaves out).
NAME may leave out its kind's namespace when that names one plugin (lora, cyclic).`,
		Example: "  s3t plugin describe lora\n  s3t plugin describe peft.acme.ia3 | jq .defaults",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := open(c)
			if err != nil {
				return err
			}
			defer m.Close()
			ents, err := m.List(c.Context())
			if err != nil {
				return err
			}
			e, err := findPlugin(ents, args[0])
			if err != nil {
				return err
			}
			cl, err := m.Client(e.Name)
			if err != nil {
				return err
			}
			info, err := cl.Info(c.Context())
			if err != nil {
				return err
			}
			d := pluginDescription{Name: info.Name, Kind: info.Kind, Version: info.Version, SDKVersion: info.SDKVersion,
				Protocol: cl.Protocol(), Description: info.Description, Builtin: e.Builtin, Path: e.Path, SHA256: e.SHA256}
			if info.Kind == sdk.KindPEFT {
				desc, err := cl.PEFT().Describe(c.Context(), &sdk.DescribeRequest{})
				if err != nil {
					return err
				}
				d.ConfigSchema, d.Defaults = desc.ConfigSchema, desc.Defaults
				if desc.Description != "" {
					d.Description = desc.Description
				}
			}
			enc := json.NewEncoder(c.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(d)
		},
	}
}

// findPlugin returns the listed plugin called name, or the one plugin that name means without
// its kind's namespace ("lora": "peft.lora"), by the rule model specs follow (QualifiedName).
func findPlugin(ents []plugins.Entry, name string) (plugins.Entry, error) {
	var found []plugins.Entry
	var names []string
	for _, e := range ents {
		if e.Name == "" || e.Status == plugins.StatusShadowed {
			continue
		}
		names = append(names, e.Name)
		if e.Name == name {
			return e, nil
		}
		if e.Name == plugins.QualifiedName(sdk.KindPEFT, name) || e.Name == plugins.QualifiedName(sdk.KindSelector, name) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return plugins.Entry{}, fmt.Errorf("plugin %s: %w (plugins: %s)", name, plugins.ErrNotFound, strings.Join(names, ", "))
	}
	return plugins.Entry{}, fmt.Errorf("%w: plugin %s: both %s and %s have that name; give the full one", errUsage, name, found[0].Name, found[1].Name)
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

func newPluginRemoveCmd(open openManager) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Uninstall a plugin: remove its catalog entry and its binary",
		Long: `Uninstall the installed plugin NAME (its full name, as plugin list shows it): its entry leaves the
catalog, whose file is replaced atomically as install writes it, then its binary is deleted from the
plugin directory. Built-ins cannot be removed.

A running s3t serve over the same plugin directory sees the change at its next plugin use, as it
sees an install or an upgrade (--replace): it stops its process of the plugin, and models created
from then on cannot name it (400, plugin not found). Models made with it keep working: their plans
and slice orders are stored with them.`,
		Example: "  s3t plugin remove peft.acme.ia3",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := open(c)
			if err != nil {
				return err
			}
			defer m.Close()
			r, err := m.Remove(args[0])
			if err != nil {
				return err
			}
			what := "its binary " + r.Path + " was already gone"
			if r.BinaryRemoved {
				what = "deleted its binary " + r.Path
			}
			fmt.Fprintf(c.OutOrStdout(), "removed %s %s (%s plugin, sha256 %s): removed its catalog entry, %s\n",
				r.Record.Name, r.Record.Version, r.Record.Kind, r.Record.SHA256, what)
			return nil
		},
	}
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
