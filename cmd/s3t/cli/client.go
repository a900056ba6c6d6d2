package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/api"
)

// clientFlags are the connection flags of the commands that call a server.
type clientFlags struct {
	url, key string
	timeout  time.Duration
}

func (f *clientFlags) register(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.url, "url", env("S3T_URL"), "server URL (S3T_URL)")
	c.PersistentFlags().StringVar(&f.key, "api-key", env("S3T_API_KEY"), "API key (S3T_API_KEY)")
	hideDefaults(c.PersistentFlags(), "api-key")
	c.PersistentFlags().DurationVar(&f.timeout, "timeout", time.Minute, "how long one request may wait for its answer (0: no limit); following a training's progress is not limited")
}

// request makes one request of command c with call, limited to --timeout: a server that takes
// the connection and never answers no longer hangs the command until it is interrupted.
func request[T any](c *cobra.Command, f *clientFlags, call func(ctx context.Context) (T, error)) (T, error) {
	ctx := c.Context()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	v, err := call(ctx)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && c.Context().Err() == nil {
		err = fmt.Errorf("no answer from %s within --timeout %s: %w", f.url, f.timeout, err)
	}
	return v, err
}

func (f *clientFlags) client() (*api.Client, error) {
	var opts []api.ClientOption
	if f.key != "" {
		opts = append(opts, api.WithAPIKey(f.key))
	}
	c, err := api.NewClient(f.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newModelsCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "models",
		Short: "List and inspect the models of a running s3t server",
		Long:  "Call a running s3t server's model routes." + serverEnvHelp("S3T_URL", "S3T_API_KEY"),
	}
	f.register(c)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the models: name, backbone, PEFT type, shards x slices, samples, ledger version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			res, err := request(c, &f, func(ctx context.Context) (*api.ListModelsResponse, error) {
				return cl.ListModels(ctx, &api.ListModelsRequest{})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBACKBONE\tPEFT\tSHARDSxSLICES\tSAMPLES\tVERSION")
			for _, m := range res.Models {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%dx%d\t%d\t%d\n", m.Name, m.Spec.Backbone, m.Spec.PEFT.Type, m.Spec.S3T.Shards, m.Spec.S3T.Slices, m.Samples, m.Version)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a model with its sequences and live prefixes (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			m, err := request(c, &f, func(ctx context.Context) (*api.Model, error) {
				return cl.GetModel(ctx, &api.GetModelRequest{Name: args[0]})
			})
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), m)
		},
	}
	var force, watch bool
	train := &cobra.Command{
		Use:   "train NAME",
		Short: "Queue the training a model needs and show its progress until it is done",
		Long: `Queue one training job per (shard, sequence) that is not fully trained, and a retraining on
the remaining data for every sequence whose live prefix was cut (--force: retrain everything);
then follow the server's training events with a progress bar (--watch=false: return at once).
A job whose worker stops renewing its lease (killed, lost) counts as stalled, not running, until
it is requeued, and a line names the worker. Exits 1, naming the jobs and their states, when a
job it follows (one it queued, or another client's it waited for) ends failed or cancelled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			jobs, err := request(c, &f, func(ctx context.Context) (*api.TrainingJobs, error) {
				return cl.StartTraining(ctx, &api.StartTrainingRequest{Model: args[0], Force: force})
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%d training jobs queued: %v\n", len(jobs.Jobs), jobs.Jobs)
			if !watch {
				return nil
			}
			return followTraining(c, cl, args[0], jobs.Jobs)
		},
	}
	train.Flags().BoolVar(&force, "force", false, "retrain every sequence")
	train.Flags().BoolVar(&watch, "watch", true, "follow the progress until the training is done")
	var follow bool
	training := &cobra.Command{
		Use:   "training NAME",
		Short: "Print a model's training jobs and progress (JSON), or follow them (--watch)",
		Long: `Print a model's training status (JSON): its jobs with their state, stage, steps, loss, examples/s
and ETA, and the model's totals. A running job whose worker stopped renewing its lease (killed,
lost) reads "stalled": true, with its lease_until, no ETA and a message naming the worker, until a
worker requeues it. --watch follows the jobs queued or running now with a progress bar until none
is left, as models train does, without queuing any (a line says when a job stalls, and when it is
requeued): exit 1, naming them, when one ends failed or cancelled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			if follow {
				return followTraining(c, cl, args[0], nil)
			}
			st, err := request(c, &f, func(ctx context.Context) (*api.TrainingStatus, error) {
				return cl.GetTraining(ctx, &api.GetTrainingRequest{Model: args[0]})
			})
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), st)
		},
	}
	training.Flags().BoolVar(&follow, "watch", false, "follow the jobs queued or running until they end")
	cancel := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a model's queued and running training jobs (JSON: the jobs cancelled)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			res, err := request(c, &f, func(ctx context.Context) (*api.CancelTrainingResponse, error) {
				return cl.CancelTraining(ctx, &api.CancelTrainingRequest{Model: args[0]})
			})
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), res)
		},
	}
	status := &cobra.Command{
		Use:   "unlearning NAME",
		Short: "Print a model's unlearning status: live prefixes, deletions, expected deletions before retraining (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			us, err := request(c, &f, func(ctx context.Context) (*api.UnlearningStatus, error) {
				return cl.GetUnlearning(ctx, &api.GetUnlearningRequest{Model: args[0]})
			})
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), us)
		},
	}
	deletions := &cobra.Command{
		Use:   "deletions NAME",
		Short: "Print a model's deletion receipts in ledger order (JSON), the evidence to keep before deleting the model",
		Long: `Print every deletion receipt of a model in ledger order (JSON): per receipt its id, time, sample
id, the sample's (shard, slice), the sequences whose live prefix it cut (from -> to), what the
shard serves after it and the ledger version it produced. Deleting a model erases its receipts
too: keep this output first. s3t models receipt ID reads one back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			// Every page (AllReceipts), all of them under --timeout.
			rs, err := request(c, &f, func(ctx context.Context) (*api.ListReceiptsResponse, error) {
				all, err := cl.AllReceipts(ctx, args[0])
				return &api.ListReceiptsResponse{Receipts: all}, err
			})
			if err != nil {
				return err
			}
			if rs.Receipts == nil {
				rs.Receipts = []api.Receipt{}
			}
			return printJSON(c.OutOrStdout(), rs)
		},
	}
	receipt := &cobra.Command{
		Use:   "receipt ID",
		Short: "Print one deletion receipt by its id (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			rc, err := request(c, &f, func(ctx context.Context) (*api.Receipt, error) {
				return cl.GetReceipt(ctx, &api.GetReceiptRequest{ID: args[0]})
			})
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), rc)
		},
	}
	c.AddCommand(list, get, train, training, cancel, status, deletions, receipt)
	return c
}

// followTraining follows a model's training with a progress bar until no job is queued or
// running, then checks the outcome of the jobs it followed: queued (the ones a training just
// queued), and the ones it saw queued or running (another client's, on units that were busy when
// it asked: the server queues no second job for those). Jobs that had finished before, such as
// an earlier cancelled training, are not this training's.
func followTraining(c *cobra.Command, cl *api.Client, model string, queued []int64) error {
	start := time.Now()
	followed := map[int64]bool{}
	for _, id := range queued {
		followed[id] = true
	}
	bar := newStatusLine(c.ErrOrStderr())
	var last *api.TrainingStatus
	var heard time.Time         // the last event (zero: none yet)
	stalled := map[int64]bool{} // the followed jobs stalled now (stallLines)
	follows := func(id int64) bool { return followed[id] }
	for {
		st, err := cl.WatchTraining(c.Context(), &api.GetTrainingRequest{Model: model}, func(st *api.TrainingStatus) error {
			heard = time.Now()
			for _, j := range st.Jobs {
				if j.State == api.TrainingQueued || j.State == api.TrainingRunning {
					followed[j.ID] = true
				}
			}
			for _, line := range stallLines(st, follows, stalled) {
				bar.print(line)
			}
			bar.set(trainingLine(st, time.Since(start), follows))
			return nil
		})
		if st != nil {
			last = st
		}
		if err == nil {
			break
		}
		// The server went away (a replica's restart, a rolling deploy) while the jobs go on
		// on the workers: follow again, for up to followAgainFor without an event. A server
		// never heard from (a wrong --url, one not started) is an error at once.
		if c.Context().Err() != nil || !followAgain(err) || heard.IsZero() || time.Since(heard) > followAgainFor {
			bar.end()
			return err
		}
		bar.set(fmt.Sprintf("the server is unavailable (%v); following again", err))
		select {
		case <-c.Context().Done():
			bar.end()
			return c.Context().Err()
		case <-time.After(followAgainEvery):
		}
	}
	bar.end()
	if err := trainingOutcome(c.OutOrStdout(), last, followed); err != nil {
		return err
	}
	if len(followed) == 0 {
		fmt.Fprintf(c.OutOrStdout(), "no training of %q was queued or running\n", model)
		return nil
	}
	fmt.Fprintf(c.OutOrStdout(), "training done in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// followAgainFor is how long a follower of a training keeps following again after its events
// stopped, the server unavailable; followAgainEvery how often it tries.
const (
	followAgainFor   = 2 * time.Minute
	followAgainEvery = time.Second
)

// followAgain reports whether a training's event stream ended in a way worth following again:
// the server shutting down or not ready (unavailable), or a connection that broke or could not
// be made; not a refusal (an unknown model, a key without the scope).
func followAgain(err error) bool {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Code == api.CodeUnavailable
	}
	return true
}

func newDeleteCmd() *cobra.Command {
	var f clientFlags
	var idsFrom string
	var replay bool
	c := &cobra.Command{
		Use:   "delete MODEL ID...",
		Short: "Unlearn samples of a model on a running s3t server and print the receipts (JSON)",
		Long: `Delete samples: one id prints its receipt (or the earlier receipt and exit 1 when it was
deleted before); several ids (a repeated one counts once) are deleted in one ledger transaction
and each gets a result: the JSON results on stdout, a line per id on stderr (deleted with its
receipt, not found, or gone with the earlier receipt), and exit 1 when any id was not deleted by
this call.

--ids-from FILE (- for stdin) adds the ids of a file: one a line (blank lines and lines starting
with # skipped), or the JSON of s3t models deletions, whose receipts' sample ids it takes. They
go in batches of up to 10,000 ids, each batch one ledger transaction. With --replay the ids are
deletions made before and applied again, as after restoring a backup of the data directory:
an id deleted or gone (deleted earlier) or not found counts as erased, exit 0.` + serverEnvHelp("S3T_URL", "S3T_API_KEY"),
		Example: `  s3t delete fmnist sample-17
  s3t models deletions fmnist > r.tmp && mv r.tmp fmnist-receipts.json   # kept apart from the backups
  s3t delete fmnist --ids-from fmnist-receipts.json --replay   # after a restore`,
		Args: func(c *cobra.Command, args []string) error {
			if idsFrom != "" {
				return cobra.MinimumNArgs(1)(c, args)
			}
			return cobra.MinimumNArgs(2)(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			model, given := args[0], args[1:]
			if idsFrom != "" {
				more, err := readIDs(c.InOrStdin(), idsFrom, model)
				if err != nil {
					return err
				}
				given = append(given, more...)
			}
			var ids []string // each id once: a repeated id was reported "deleted earlier", exit 1
			seen := map[string]bool{}
			for _, id := range given {
				if !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				return fmt.Errorf("%w: --ids-from %s holds no id", errUsage, idsFrom)
			}
			if len(args) == 2 && idsFrom == "" { // one id: its receipt; several, even all the same: the results
				rc, err := request(c, &f, func(ctx context.Context) (*api.Receipt, error) {
					return cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: model, ID: ids[0]})
				})
				if e, ok := err.(*api.Error); ok && e.Receipt != nil {
					if perr := printJSON(c.OutOrStdout(), e.Receipt); perr != nil {
						return perr
					}
				}
				if err != nil {
					return err
				}
				return printJSON(c.OutOrStdout(), rc)
			}
			res := &api.DeleteSamplesResponse{}
			for lo := 0; lo < len(ids); lo += api.MaxDeleteBatch {
				batch := ids[lo:min(lo+api.MaxDeleteBatch, len(ids))]
				part, err := request(c, &f, func(ctx context.Context) (*api.DeleteSamplesResponse, error) {
					return cl.DeleteSamples(ctx, &api.DeleteSamplesRequest{Model: model, IDs: batch})
				})
				if err != nil {
					if lo > 0 {
						// The batches before were committed: say which, so a rerun can resume.
						fmt.Fprintf(c.ErrOrStderr(), "s3t: the first %d ids were deleted (or found erased) before this batch failed; the same command again resumes\n", lo)
					}
					return err
				}
				res.Results = append(res.Results, part.Results...)
			}
			if err := printJSON(c.OutOrStdout(), res); err != nil {
				return err
			}
			return deletionOutcome(c.ErrOrStderr(), model, res, replay)
		},
	}
	f.register(c)
	c.Flags().StringVar(&idsFrom, "ids-from", "", "also delete the ids of this file (- for stdin): one a line, or the JSON of s3t models deletions")
	c.Flags().BoolVar(&replay, "replay", false, "the ids are deletions applied again (after restoring a backup): gone or not found counts as erased, exit 0")
	return c
}

// readIDs reads the sample ids of name (- for stdin): the receipts' sample ids when it holds the
// JSON of s3t models deletions (receipts of model only), else one id a line, blank lines and
// lines starting with # skipped.
func readIDs(stdin io.Reader, name, model string) ([]string, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("--ids-from: %w", err)
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		var rs api.ListReceiptsResponse
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rs); err != nil {
			return nil, fmt.Errorf("--ids-from %s: not the JSON of s3t models deletions: %w", name, err)
		}
		ids := make([]string, 0, len(rs.Receipts))
		for _, r := range rs.Receipts {
			if r.Model != model {
				return nil, fmt.Errorf("%w: --ids-from %s: receipt %s is of model %q, not %q", errUsage, name, r.ID, r.Model, model)
			}
			ids = append(ids, r.SampleID)
		}
		return ids, nil
	}
	var ids []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ids = append(ids, line)
	}
	return ids, nil
}

// trainingOutcome checks the final state of the jobs a training follows: every one must be
// done. It prints a line for each one that is not (failed, cancelled, or missing from the
// status) and returns an error naming them with their states.
func trainingOutcome(w io.Writer, st *api.TrainingStatus, followed map[int64]bool) error {
	seen := map[int64]bool{}
	var bad []string
	for _, j := range st.Jobs {
		if !followed[j.ID] {
			continue
		}
		seen[j.ID] = true
		if j.State == api.TrainingDone {
			continue
		}
		msg := ""
		if j.Message != "" {
			msg = ": " + j.Message
		}
		fmt.Fprintf(w, "job %d (shard %d, sequence %d): %s%s\n", j.ID, j.Shard, j.Sequence, j.State, msg)
		bad = append(bad, fmt.Sprintf("job %d %s", j.ID, j.State))
	}
	var missing []int64
	for id := range followed {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	for _, id := range missing {
		fmt.Fprintf(w, "job %d: not in the server's training status\n", id)
		bad = append(bad, fmt.Sprintf("job %d missing", id))
	}
	if len(bad) > 0 {
		return fmt.Errorf("training of %q did not finish: %d of %d jobs not done: %s", st.Model, len(bad), len(followed), strings.Join(bad, ", "))
	}
	return nil
}

// deletionOutcome prints to w what happened to each id of a batch deletion, and returns an
// error when any id was not deleted by this call: not found, or deleted earlier ("gone": its
// line names the earlier receipt; the call still fails, as the single-id form does, since it
// made no receipt for that id).
func deletionOutcome(w io.Writer, model string, res *api.DeleteSamplesResponse, replay bool) error {
	var notFound, gone, other int
	for _, r := range res.Results {
		switch r.Status {
		case api.DeletionDeleted:
			fmt.Fprintf(w, "%s: deleted, receipt %s\n", r.ID, receiptID(r.Receipt))
		case api.DeletionGone:
			gone++
			fmt.Fprintf(w, "%s: gone: deleted earlier, receipt %s\n", r.ID, receiptID(r.Receipt))
		case api.DeletionNotFound:
			notFound++
			fmt.Fprintf(w, "%s: not found\n", r.ID)
		default:
			other++
			fmt.Fprintf(w, "%s: %s\n", r.ID, r.Status)
		}
	}
	n := notFound + gone + other
	if n == 0 || replay && other == 0 {
		return nil
	}
	var parts []string
	if notFound > 0 {
		parts = append(parts, fmt.Sprintf("%d not found", notFound))
	}
	if gone > 0 {
		parts = append(parts, fmt.Sprintf("%d deleted earlier (gone)", gone))
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d in another state", other))
	}
	return fmt.Errorf("delete from %q: %d of %d samples not deleted by this call: %s", model, n, len(res.Results), strings.Join(parts, ", "))
}

func receiptID(r *api.Receipt) string {
	if r == nil {
		return "(no receipt)"
	}
	return r.ID
}
