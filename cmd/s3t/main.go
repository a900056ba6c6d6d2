// Command s3t is the exact-unlearning model server and its tools.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/s3t-dev/s3t/cmd/s3t/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
