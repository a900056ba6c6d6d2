package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// hideDefaults keeps the named flags' defaults, which their environment variables set and which
// may hold a secret (an API key, a database password), out of --help: the help showed
// S3T_API_KEY's value as --api-key's default.
func hideDefaults(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		fs.Lookup(n).DefValue = ""
	}
}

// envVar is one environment variable s3t reads; all of them are listed in envVars.
type envVar struct {
	Name, Default, Description string
}

// envVars is every environment variable the server and client commands read, in one place
// (the plugin host documents its own in plugins.Env).
var envVars = []envVar{
	{"S3T_ADDR", "127.0.0.1:8080", "address s3t serve listens on (--addr)"},
	{"S3T_DATA", "./s3t-data", "data directory of s3t serve: ledger.db and blobs/ (--data)"},
	{"S3T_KEYS", "", "API keys file of s3t serve: lines NAME SHA256HEX SCOPES (--keys); none: loopback only"},
	{"S3T_TLS_CERT", "", "certificate chain (PEM) s3t serve serves HTTPS with (--tls-cert, with S3T_TLS_KEY); loaded again when it changes"},
	{"S3T_TLS_KEY", "", "private key (PEM) of S3T_TLS_CERT (--tls-key)"},
	{"S3T_DATABASE_URL", "", "ledger database: postgres://... for PostgreSQL (--database-url); empty: SQLite in the data directory"},
	{"S3T_BLOB_URL", "", "blob bucket: file://DIR, s3://BUCKET?... (--blob-url); empty: file:// under the data directory"},
	{"S3T_TRAIN_WORKERS", "1", "training jobs s3t serve or s3t worker runs at once (--train-workers); 0 with serve: serve only"},
	{"S3T_LOG_FORMAT", "text", "log records as text or json lines, on stderr (--log-format)"},
	{"S3T_LOG_LEVEL", "info", "the least level logged: debug, info, warn or error (--log-level)"},
	{"S3T_URL", "http://127.0.0.1:8080", "server URL the client commands call (--url)"},
	{"S3T_API_KEY", "", "API key the client commands send (--api-key)"},
}

// env returns the value of the named variable, or its default.
func env(name string) string {
	for _, v := range envVars {
		if v.Name == name {
			if s, ok := os.LookupEnv(name); ok {
				return s
			}
			return v.Default
		}
	}
	panic("cli: undeclared environment variable " + name)
}

// serverEnvHelp describes the named variables for a command's --help.
func serverEnvHelp(names ...string) string {
	var b strings.Builder
	b.WriteString("\nEnvironment:\n")
	for _, v := range envVars {
		for _, n := range names {
			if v.Name == n {
				fmt.Fprintf(&b, "  %-12s %s\n", v.Name, v.Description)
			}
		}
	}
	return b.String()
}

// trainWorkersFlag declares --train-workers on c with S3T_TRAIN_WORKERS as its default, and
// returns the check to run first thing in c's RunE: a S3T_TRAIN_WORKERS that is not a number is
// an error unless --train-workers overrides it, never a silent default (0 would make a serving
// replica of what was meant to train); so is a count under least (0 for serve, 1 for worker).
func trainWorkersFlag(c *cobra.Command, dst *int, least int, help string) func() error {
	s := env("S3T_TRAIN_WORKERS")
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		n = 1
	}
	c.Flags().IntVar(dst, "train-workers", n, help)
	return func() error {
		if err != nil && !c.Flags().Changed("train-workers") {
			return fmt.Errorf("%w: S3T_TRAIN_WORKERS=%q is not a number of training jobs", errUsage, s)
		}
		if *dst < least { // -1 used to mean 0, a serving-only replica, with no word of it in the log
			return fmt.Errorf("%w: --train-workers (or S3T_TRAIN_WORKERS) is %d; want %d or more", errUsage, *dst, least)
		}
		return nil
	}
}
