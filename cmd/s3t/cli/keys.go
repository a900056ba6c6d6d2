package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/server"
)

func newKeysCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Make API keys for s3t serve --keys",
	}
	c.AddCommand(&cobra.Command{
		Use:   "new NAME SCOPES",
		Short: "Generate an API key: prints the secret once (stderr) and the keys-file line holding its SHA-256 (stdout)",
		Long: `Generate a random API key with the given comma-separated scopes (admin, train, infer, delete;
admin implies the others). The secret is printed once, on standard error ("secret: s3t_..."):
give it to the key's user. Standard output is the line to append to the keys file given to
s3t serve --keys, so that appending the output to the file stores only the hash, as the server
does.`,
		Example: `  s3t keys new compliance delete >> keys`,
		Args:    cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			scopes, err := server.ParseScopes(args[1])
			if err != nil {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			// The name is the keys file line's first field: one word, not a comment.
			if name := args[0]; name == "" || strings.HasPrefix(name, "#") || strings.ContainsFunc(name, unicode.IsSpace) {
				return fmt.Errorf("%w: key name %q: want one word, without spaces, not starting with #", errUsage, name)
			}
			var raw [32]byte
			if _, err := rand.Read(raw[:]); err != nil {
				return fmt.Errorf("keys: %w", err)
			}
			secret := "s3t_" + hex.EncodeToString(raw[:])
			fmt.Fprintf(c.ErrOrStderr(), "secret: %s\n", secret)
			// The scopes as parsed, so that "train, infer" gives a line LoadKeys reads.
			fmt.Fprintf(c.OutOrStdout(), "%s %s %s\n", args[0], server.HashKey(secret), server.FormatScopes(scopes))
			return nil
		},
	})
	return c
}
