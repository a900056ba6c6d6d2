package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/store"
)

// maxBatchDeletions caps the ids of one batch deletion.
const maxBatchDeletions = api.MaxDeleteBatch

// maxBatchBodyBytes is the body a batch deletion of maxBatchDeletions ids of maxSampleID bytes
// takes, whatever their escaping: each byte at most 6 in JSON (\u003c for "<", as Go's encoder
// writes it), quotes and a comma, and the object around them. The JSON routes' 1 MiB refused
// 10,000 ids of 111 bytes.
const maxBatchBodyBytes = maxBatchDeletions*(6*maxSampleID+3) + 64

// deleteSample unlearns one sample: the response is the store's receipt; an id deleted before
// is a 410 carrying the earlier receipt, an unknown id a 404.
func (s *Server) deleteSample(c echo.Context) error {
	name, id := param(c, "name"), param(c, "id")
	rc, err := s.cfg.Store.Delete(c.Request().Context(), name, id)
	s.countDeletion(err)
	if err != nil {
		return fmt.Errorf("delete sample %q of model %q: %w", id, name, err)
	}
	s.afterDeletion(name) // the store logged the deletion (store.Delete), with its sample id
	return c.JSON(http.StatusOK, toReceipt(rc))
}

// deleteSamples unlearns several samples in one transaction; each id has its own result.
func (s *Server) deleteSamples(c echo.Context) error {
	name := param(c, "name")
	var req api.DeleteSamplesRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.IDs) == 0 || len(req.IDs) > maxBatchDeletions {
		return invalidf("ids: want 1 to %d ids, got %d", maxBatchDeletions, len(req.IDs))
	}
	res, err := s.cfg.Store.DeleteBatch(c.Request().Context(), name, req.IDs)
	if err != nil {
		// Each id counts as the one-sample route would count it: not_found for an unknown
		// model, error when the ledger failed.
		s.metrics.deletions.WithLabelValues(deletionResult(err)).Add(float64(len(req.IDs)))
		return fmt.Errorf("delete samples of model %q: %w", name, err)
	}
	out := api.DeleteSamplesResponse{Results: make([]api.DeletionResult, len(res))}
	deleted := 0
	for i, r := range res {
		s.countDeletion(r.Err)
		dr := api.DeletionResult{ID: r.SampleID, Receipt: toReceipt(r.Receipt)}
		switch {
		case r.Err == nil:
			dr.Status = api.DeletionDeleted
			deleted++
		case errors.Is(r.Err, store.ErrGone):
			dr.Status = api.DeletionGone
		case errors.Is(r.Err, store.ErrNotFound):
			dr.Status, dr.Receipt = api.DeletionNotFound, nil
		default:
			return fmt.Errorf("delete sample %q of model %q: %w", r.SampleID, name, r.Err)
		}
		out.Results[i] = dr
	}
	if deleted > 0 { // the store logged the batch (store.DeleteBatch)
		s.afterDeletion(name)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getReceipt(c echo.Context) error {
	rc, err := s.cfg.Store.GetReceipt(c.Request().Context(), param(c, "receipt"))
	if err != nil {
		return fmt.Errorf("get receipt: %w", err)
	}
	return c.JSON(http.StatusOK, toReceipt(rc))
}

func (s *Server) listReceipts(c echo.Context) error {
	name := param(c, "name")
	after, limit := int64(0), api.DefaultReceiptsPage
	if v := c.QueryParam("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return invalidf("after=%q: want a ledger version, 0 or more (the next of the page before)", v)
		}
		after = n
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxReceiptsPage {
			return invalidf("limit=%q: want 1 to %d receipts a page", v, api.MaxReceiptsPage)
		}
		limit = n
	}
	rcs, err := s.cfg.Store.ReceiptsAfter(c.Request().Context(), name, after, limit)
	if err != nil {
		return fmt.Errorf("list receipts: %w", err)
	}
	if len(rcs) == 0 {
		// An unknown model has no receipts either; tell the two apart.
		if _, err := s.cfg.Store.GetModel(c.Request().Context(), name); err != nil {
			return fmt.Errorf("list receipts: %w", err)
		}
	}
	out := api.ListReceiptsResponse{Receipts: make([]api.Receipt, len(rcs))}
	for i, r := range rcs {
		out.Receipts[i] = *toReceipt(r)
	}
	if len(rcs) == limit { // there may be more
		out.Next = rcs[len(rcs)-1].LedgerVersion
	}
	return c.JSON(http.StatusOK, out)
}

// countDeletion records one deletion attempt's outcome in the deletions counter.
func (s *Server) countDeletion(err error) {
	s.metrics.deletions.WithLabelValues(deletionResult(err)).Inc()
}

// deletionResult is the s3t_deletions_total result of a deletion that ended with err.
func deletionResult(err error) string {
	switch {
	case err == nil:
		return api.DeletionDeleted
	case errors.Is(err, store.ErrGone):
		return api.DeletionGone
	case errors.Is(err, store.ErrNotFound):
		return api.DeletionNotFound
	default:
		return "error"
	}
}

// toReceipt converts a store receipt to its API form (nil stays nil).
func toReceipt(r *store.Receipt) *api.Receipt {
	if r == nil {
		return nil
	}
	out := &api.Receipt{ID: r.ID, Time: r.Time, Model: r.Model, SampleID: r.SampleID, Shard: r.Shard, Slice: r.Slice,
		Truncations: make([]api.Truncation, len(r.Truncations)), Served: api.Served(r.Served), Serving: api.Served(r.Serving), ServingGen: r.ServingGen,
		Live: r.Live, LedgerVersion: r.LedgerVersion}
	for i, t := range r.Truncations {
		out.Truncations[i] = api.Truncation(t)
	}
	return out
}
