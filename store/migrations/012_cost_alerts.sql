-- Cost alerts: one row per threshold crossed per UTC day. The unique (day, kind) insert decides
-- which process publishes it (transcriber.alerts); the webhook_* columns say how a gateway's POST
-- to SCRIBE_ALERT_WEBHOOK_URL went (NULL: no URL was set when the alert was handled).

CREATE TABLE cost_alerts (
    id                  bigserial PRIMARY KEY,
    day                 date NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('rise', 'projected_rise', 'daily', 'projected_daily')),
    cost_usd            numeric(12, 6) NOT NULL,
    projected_usd       numeric(12, 6) NOT NULL,
    previous_usd        numeric(12, 6) NOT NULL,
    threshold_usd       numeric(12, 6) NOT NULL,
    message             text NOT NULL,
    noticed_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    webhook_state       text CHECK (webhook_state IN ('pending', 'delivered', 'failed')),
    webhook_attempts    integer NOT NULL DEFAULT 0,
    webhook_last_status integer,
    webhook_last_error  text,
    webhook_updated_at  timestamptz,
    UNIQUE (day, kind)
);
