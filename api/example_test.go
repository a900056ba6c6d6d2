package api_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/s3t-dev/s3t/api"
)

// Example deletes a sample and handles the case where it was deleted before.
func Example() {
	ctx := context.Background()
	c, err := api.NewClient("http://127.0.0.1:8080", api.WithAPIKey("secret"))
	if err != nil {
		panic(err)
	}
	rc, err := c.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "fmnist", ID: "sample-17"})
	switch {
	case api.IsGone(err):
		var e *api.Error
		_ = errors.As(err, &e)
		fmt.Println("already deleted; earlier receipt", e.Receipt.ID)
	case err != nil:
		fmt.Println("delete failed:", err)
	default:
		fmt.Println("receipt", rc.ID, "shard", rc.Shard, "now serves prefix", rc.Served.Length)
	}
}
