package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/store"
)

func newServeCmd() *cobra.Command {
	var (
		addr, data, keysFile string
		allowPaths           bool
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the s3t HTTP server on one machine (SQLite ledger and blobs in a data directory)",
		Long: `Serve the s3t API: backbones, models, sample uploads and deletions with receipts.
State lives in the data directory: the SQLite ledger (ledger.db) and the blob bucket (blobs/).
Without an API keys file the server allows every request and listens on loopback only.
SIGINT or SIGTERM shut it down gracefully, letting in-flight requests finish.` + serverEnvHelp("S3T_ADDR", "S3T_DATA", "S3T_KEYS"),
		Example: `  s3t serve --addr 127.0.0.1:8080 --data ./s3t-data`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return serve(c.Context(), addr, data, keysFile, allowPaths)
		},
	}
	c.Flags().StringVar(&addr, "addr", env("S3T_ADDR"), "listen address (S3T_ADDR)")
	c.Flags().StringVar(&data, "data", env("S3T_DATA"), "data directory (S3T_DATA)")
	c.Flags().StringVar(&keysFile, "keys", env("S3T_KEYS"), "API keys file (S3T_KEYS)")
	c.Flags().BoolVar(&allowPaths, "allow-paths", false, "let clients register backbones from paths on this machine")
	return c
}

// serve opens the data directory, migrates the ledger, finishes interrupted purges and serves
// until ctx is cancelled.
func serve(ctx context.Context, addr, data, keysFile string, allowPaths bool) error {
	dir, err := filepath.Abs(data)
	if err != nil {
		return fmt.Errorf("serve: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("serve: data directory: %w", err)
	}
	var keys []server.Key
	if keysFile != "" {
		if keys, err = server.LoadKeys(keysFile); err != nil {
			return err
		}
	}
	st, err := store.Open(ctx, store.SQLiteDSN(dir))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	burl, err := store.DefaultBlobURL(dir)
	if err != nil {
		return err
	}
	blobs, err := store.OpenBlobs(ctx, burl)
	if err != nil {
		return err
	}
	defer blobs.Close()
	st.OnPurge(blobs.Purger())
	if n, err := st.DrainPurges(ctx); err != nil {
		slog.Warn("interrupted purges remain", "finished", n, "err", err)
	} else if n > 0 {
		slog.Info("finished interrupted purges", "count", n)
	}
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Keys: keys, AllowPaths: allowPaths})
	if err != nil {
		return err
	}
	ln, err := srv.Listen(addr)
	if err != nil {
		return err
	}
	slog.Info("s3t serve", "data", dir, "keys", len(keys))
	return srv.Serve(ctx, ln)
}
