-- 0003: a model's receipts in ledger order, a page at a time (GET /v1/models/{name}/deletions
-- ?after=VERSION&limit=N): without this index every page sorted all of the model's receipts.
CREATE INDEX deletions_version ON deletions (model, version);
