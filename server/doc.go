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
//   - operations: /healthz, /readyz (the ledger answers), /metrics (Prometheus), /openapi.json
//   - backbones (backbones.go): PUT /v1/backbones/{name} uploads an ONNX file, POST /v1/backbones
//     registers a server-readable path (Config.AllowPaths), GET lists and reads them (Info,
//     detected Manifest, and the ONNX Runtime provider in use with its fallback reason), DELETE
//     removes one no model uses. They are stored as blobs under backbones/NAME/.
//   - models (models.go): create (the api.ModelSpec is stored verbatim as the ledger's model
//     config; sequences are chosen per shard with the spec's selector and seed Seed+k), list,
//     get (live prefixes and what each shard serves), delete; POST .../train calls Config.Trainer.
//   - samples (samples.go): NDJSON upload, streamed under a size limit, every line checked
//     (JSON, id, input, label among the model's labels) and then stored in one ledger
//     transaction, so a rejected upload stores nothing and lists its failing lines; GET a
//     sample's label and placement. The input is kept as the line's raw JSON value.
//   - deletions (deletions.go): DELETE /v1/models/{name}/samples/{id}, the batch form POST
//     /v1/models/{name}/deletions, GET /v1/deletions/{receipt} and GET
//     /v1/models/{name}/deletions (every receipt in ledger order); each returns the store's
//     receipts.
//
// # Errors
//
// Handlers return errors; toAPIError maps them, in one place, to a status and the body
// {"error":{"code","message"}}: store.ErrNotFound 404, store.ErrGone 410 (with the earlier
// receipt), store.ErrConflict 409, store.ErrInvalid and validation 400, a body over its limit
// 413, anything else 500 (logged; the client sees "internal error").
//
// # Security and limits
//
// API keys carry scopes (admin, train, infer, delete; admin implies the others) and are kept as
// SHA-256 hashes (LoadKeys reads "NAME SHA256HEX SCOPES" lines; HashKey makes the hash). With no
// keys, every request is allowed and Server.Listen binds loopback only, saying so in the log.
// JSON bodies are limited to Config.MaxBodyBytes, uploads to Config.MaxUploadBytes and one
// NDJSON line to Config.MaxLineBytes.
//
// # Not here yet
//
// Training runs through the Trainer interface (the training issue implements it; without one the
// route answers 501). Prediction (native and KServe v2), training progress and the unlearning
// status routes are added to Routes by the issues that build them.
package server
