// Package server is the s3t HTTP API: Echo v4 wiring with every route in one place, handlers
// per resource, one error mapper, authentication and metrics. It is built by the server issue.
package server
