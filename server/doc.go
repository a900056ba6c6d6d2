// Package server is the s3t HTTP API: Echo v4 wiring with every route in one place
// (Server.Routes), handlers as methods in one file per resource, and one error handler.
//
// # Routes
//
// Server.Routes is the single table the server is built from: Echo registers it, the
// authenticator reads each route's scope, the size limiter its body kind, the metrics its
// pattern, and OpenAPI renders it as /openapi.json (a test checks that the document and the
// served routes are the same set). Resources:
//
//   - operations (health.go, metrics.go): /healthz, /readyz (the ledger answers), /metrics
//     (Prometheus, below), /openapi.json
//   - backbones (backbones.go): register from an upload or a server-readable path
//     (Config.AllowPaths), list, get (manifest, ONNX Runtime provider and why), delete when unused.
//   - models (models.go): create (the spec stored with the record training.NewRecord derives),
//     list, get (live prefixes, what each shard serves), delete (erases everything).
//   - samples (samples.go): NDJSON upload, all or nothing with per-line errors; a sample's placement.
//   - training (training.go): start, status with progress, Server-Sent Events, cancel, through
//     Config.Trainer (training.Runner; 501 without one); the unlearning status per shard and
//     sequence, and the retraining policy.
//   - deletions (deletions.go): one sample or a batch, in one ledger transaction each; the response
//     is the receipt (410 with the earlier receipt for a sample deleted before); receipts read back.
//   - inference (predict.go, kserve.go): the native predict and the KServe Open Inference Protocol
//     v2, answered by Config.Serving (serving.Service, which checks the model's ledger version on
//     every prediction; 501 without one).
//
// # Metrics
//
// /metrics serves request counts and latency histograms by route pattern, deletions by result,
// and, read from the ledger at every scrape (so correct across processes): live prefix lengths,
// trained stages and served prefixes per model/shard/sequence, deletions and samples per model,
// training jobs by state with steps done/total (through Config.Trainer's Status), and the queue
// depth (Config.QueueDepth).
//
// # Errors
//
// Handlers return errors; toAPIError maps them, in one place, to a status and the body
// {"error":{"code","message"}}: store.ErrNotFound 404, store.ErrGone 410 (with the earlier
// receipt), store.ErrConflict 409, store.ErrInvalid and validation 400, a body over its limit
// 413, anything else 500 (logged; the client sees "internal error"), or 503 unavailable when
// the ledger does not answer then (clients retry a 503). On the KServe v2 routes
// the error handler writes the same status with the protocol's body, {"error": "message"}.
//
// # Security and limits
//
// API keys carry scopes (admin, train, infer, delete; admin implies the others) and are kept as
// SHA-256 hashes (LoadKeys reads "NAME SHA256HEX SCOPES" lines; HashKey makes the hash). With no
// keys, every request is allowed and Server.Listen binds loopback only, saying so in the log.
// JSON bodies are limited to Config.MaxBodyBytes, predict and infer bodies (a batch of inputs)
// to Config.MaxInferBytes, uploads to Config.MaxUploadBytes and one NDJSON line to
// Config.MaxLineBytes.
package server
