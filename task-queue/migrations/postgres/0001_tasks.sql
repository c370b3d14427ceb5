-- task-queue schema, PostgreSQL. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS tq_queues (
    name        TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS tq_tasks (
    id               BIGSERIAL PRIMARY KEY,
    queue            TEXT NOT NULL REFERENCES tq_queues (name),
    payload          BYTEA NOT NULL,
    dedup_key        TEXT,
    -- ready | leased | dead | done (done rows only keep a dedup key alive)
    state            TEXT NOT NULL,
    -- number of times the task was handed to a consumer (claims)
    attempts         BIGINT NOT NULL DEFAULT 0,
    available_at     BIGINT NOT NULL,
    enqueued_at      BIGINT NOT NULL,
    lease_token      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    finished_at      BIGINT
);

-- One task per (queue, dedup key); NULL keys never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS tq_tasks_dedup ON tq_tasks (queue, dedup_key);
-- Claim order (available_at, id) straight from the index, without a sort.
CREATE INDEX IF NOT EXISTS tq_tasks_claim ON tq_tasks (queue, state, available_at, id);
CREATE INDEX IF NOT EXISTS tq_tasks_lease ON tq_tasks (state, lease_expires_at);
