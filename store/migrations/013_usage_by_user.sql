-- The ledger read back per user (GET /v1/usage): one user's rows of a window without reading
-- everyone's.
CREATE INDEX usage_user_created ON usage (user_id, created_at);
