package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/s3t-dev/s3t/internal/buildinfo"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
)

type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	deletions *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, extra ...prometheus.Collector) (*metrics, error) {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "s3t_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "s3t_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route", "method"}),
		deletions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "s3t_deletions_total", Help: "Sample deletions asked for, by result: deleted, gone (deleted before), not_found (unknown sample or model), error (the ledger failed).",
		}, []string{"result"}),
	}
	buildInfo := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3t_build_info",
		Help:        "Always 1; its labels name the running build (s3t --version) and its Go version, so a dashboard shows which build each process runs during an upgrade.",
		ConstLabels: prometheus.Labels{"version": buildinfo.Version(), "goversion": runtime.Version()}},
		func() float64 { return 1 })
	cs := []prometheus.Collector{m.requests, m.latency, m.deletions, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	for _, c := range append(cs, extra...) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

// servingCollectors count what the serving service did beside the predictions themselves.
func servingCollectors(svc *serving.Service) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "s3t_predictions_coalesced_total",
			Help: "Predictions that waited in a model's queue and then ran in one batch with other waiting ones."},
			func() float64 { return float64(svc.Coalesced()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "s3t_predictions_recomputed_total",
			Help: "Predictions that started on a cached serving state, were shown out of date by the ledger read beside them, and were computed again on the current one."},
			func() float64 { return float64(svc.Recomputed()) }),
		runSizesCollector{svc},
	}
}

// runSizesCollector exposes serving.Service.RunSizes as a histogram.
type runSizesCollector struct{ svc *serving.Service }

var runSizesDesc = prometheus.NewDesc("s3t_onnx_run_inputs",
	"ONNX Runtime runs of a shard's checkpoint by the inputs each ran: 1 for a prediction of one input alone, more for a prediction of several inputs or a batch of queued predictions (dynamic batching).",
	nil, nil)

func (c runSizesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- runSizesDesc }

func (c runSizesCollector) Collect(ch chan<- prometheus.Metric) {
	counts, inputs := c.svc.RunSizes()
	bounds := serving.RunSizeBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, bound := range bounds {
		cum += uint64(counts[i])
		buckets[float64(bound)] = cum
	}
	cum += uint64(counts[len(counts)-1])
	ch <- prometheus.MustNewConstHistogram(runSizesDesc, cum, float64(inputs), buckets)
}

// middleware records every request under its route pattern (never the raw path, so model
// names and sample ids do not become label values).
func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		if err != nil {
			status, _ = toAPIError(err)
		}
		method := methodLabel(c.Request().Method)
		m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		return err
	}
}

// methodLabel is a request's method as a label value: one of the standard methods, else
// "other". Go's server takes any token as a method, before any key is checked, so the method as
// sent would let every client add series without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

func (s *Server) metricsHandler(c echo.Context) error {
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(c.Response(), c.Request())
	return nil
}

// scrapeTimeout bounds the ledger reads of one scrape.
const scrapeTimeout = 5 * time.Second

// Descriptions of the series stateCollector reads from the ledger (and the queue) at every
// scrape: they are correct across processes (a serving replica reports the training a worker
// process runs) and cost a few indexed reads per model.
var (
	descQueueJobs = prometheus.NewDesc("s3t_queue_jobs",
		"Training jobs in the queue by state (waiting: available, scheduled or retryable; running).", []string{"state"}, nil)
	descTrainingJobs = prometheus.NewDesc("s3t_training_jobs",
		"A model's training jobs by state (queued, running, done, failed, cancelled).", []string{"model", "state"}, nil)
	descTrainingSteps = prometheus.NewDesc("s3t_training_steps",
		"Optimizer steps of a model's training jobs (failed and cancelled ones left out; a job not started yet counted at an estimate): done so far and total.", []string{"model", "kind"}, nil)
	descTrainingProgress = prometheus.NewDesc("s3t_training_progress_ratio",
		"A model's training progress: steps done / total, as its training status reports it (0 before any job).", []string{"model"}, nil)
	descLivePrefix = prometheus.NewDesc("s3t_live_prefix_length",
		"Live prefix length (slices) of each sequence of each shard.", []string{"model", "shard", "sequence"}, nil)
	descTrainedStages = prometheus.NewDesc("s3t_trained_stages",
		"Trained and published stages of each sequence of each shard (current generation).", []string{"model", "shard", "sequence"}, nil)
	descServedPrefix = prometheus.NewDesc("s3t_served_prefix_length",
		"The prefix each shard serves: the longest both live and trained (0: the shard serves nothing).", []string{"model", "shard"}, nil)
	descModelDeletions = prometheus.NewDesc("s3t_model_deletions",
		"Samples deleted so far (receipts in the ledger) per model and shard.", []string{"model", "shard"}, nil)
	descModelSamples = prometheus.NewDesc("s3t_model_samples",
		"Stored (not deleted) samples per model.", []string{"model"}, nil)
	descPurgesPending = prometheus.NewDesc("s3t_purges_pending",
		"Purges queued by deletions (a deleted sample's or model's checkpoints and caches to erase) and not completed yet; one leaves the queue within a second of its completion, a failing one is retried every 10 s.", nil, nil)
	descPurgeOldest = prometheus.NewDesc("s3t_purge_oldest_age_seconds",
		"Age of the oldest queued purge (0: none). Over a minute, a purge is failing and a deleted sample's derived data is still stored: the log's \"purge failed\" lines say why.", nil, nil)
	descLedgerUp = prometheus.NewDesc("s3t_ledger_scrape_success",
		"1 when this scrape read the ledger (and the queue), 0 when a read failed (the failing series are left out).", nil, nil)
)

// stateCollector reports the ledger's current state on every scrape: live prefixes, what
// is served, deletions, samples, training progress (through the Trainer, which adds this
// process's live progress to the ledger's rows) and the queue depth.
type stateCollector struct {
	store interface {
		ListModels(context.Context) ([]*store.Model, error)
		DeletionCounts(context.Context, string) ([]int64, error)
		Trainings(context.Context, string) ([]*store.Training, error)
		PurgeBacklog(context.Context) (int, time.Time, error)
	}
	trainer Trainer
	depth   func(context.Context) (waiting, running int, err error)
	log     *slog.Logger
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueJobs, descTrainingJobs, descTrainingSteps, descTrainingProgress,
		descLivePrefix, descTrainedStages, descServedPrefix, descModelDeletions, descModelSamples, descPurgesPending,
		descPurgeOldest, descLedgerUp} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ok := 1.0
	fail := func(what string, err error) {
		ok = 0
		c.log.Warn("metrics: read "+what, "err", err)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	defer func() { gauge(descLedgerUp, ok) }()
	if c.depth != nil {
		if waiting, running, err := c.depth(ctx); err != nil {
			fail("queue depth", err)
		} else {
			gauge(descQueueJobs, float64(waiting), "waiting")
			gauge(descQueueJobs, float64(running), "running")
		}
	}
	if n, oldest, err := c.store.PurgeBacklog(ctx); err != nil {
		fail("purge queue", err)
	} else {
		gauge(descPurgesPending, float64(n))
		age := 0.0
		if n > 0 {
			age = max(time.Since(oldest).Seconds(), 0)
		}
		gauge(descPurgeOldest, age)
	}
	models, err := c.store.ListModels(ctx)
	if err != nil {
		fail("models", err)
		return
	}
	for _, m := range models {
		itoa := strconv.Itoa
		pub := m.Published()
		for k := range m.Live {
			for b, n := range m.Live[k] {
				gauge(descLivePrefix, float64(n), m.Name, itoa(k), itoa(b))
				gauge(descTrainedStages, float64(m.Trained[k][b]), m.Name, itoa(k), itoa(b))
			}
			gauge(descServedPrefix, float64(pub[k].Length), m.Name, itoa(k))
		}
		gauge(descModelSamples, float64(m.Samples), m.Name)
		if dels, err := c.store.DeletionCounts(ctx, m.Name); err != nil {
			fail("deletions of "+m.Name, err)
		} else {
			for k, n := range dels {
				gauge(descModelDeletions, float64(n), m.Name, itoa(k))
			}
		}
		var ts []*store.Training
		if c.trainer != nil {
			ts, err = c.trainer.Status(ctx, m.Name)
		} else {
			ts, err = c.store.Trainings(ctx, m.Name)
		}
		if err != nil {
			fail("training of "+m.Name, err)
			continue
		}
		collectTraining(m.Name, ts, gauge)
	}
}

// collectTraining reports a model's jobs by state and its steps done / total, counted as
// GET /v1/models/{name}/training counts them (trainingSteps).
func collectTraining(model string, ts []*store.Training, gauge func(*prometheus.Desc, float64, ...string)) {
	states := map[string]int{store.TrainingQueued: 0, store.TrainingRunning: 0, store.TrainingDone: 0, store.TrainingFailed: 0, store.TrainingCancelled: 0}
	for _, t := range ts {
		states[t.State]++
	}
	step, steps, ratio := trainingSteps(ts)
	for st, n := range states {
		gauge(descTrainingJobs, float64(n), model, st)
	}
	gauge(descTrainingSteps, float64(step), model, "done")
	gauge(descTrainingSteps, float64(steps), model, "total")
	gauge(descTrainingProgress, ratio, model)
}
