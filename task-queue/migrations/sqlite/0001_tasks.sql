-- task-queue schema, SQLite. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS tq_queues (
    name        TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS tq_tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT NOT NULL REFERENCES tq_queues (name),
    payload          BLOB NOT NULL,
    dedup_key        TEXT,
    -- ready | leased | dead | done (done rows only keep a dedup key alive)
    state            TEXT NOT NULL,
    -- number of times the task was handed to a consumer (claims)
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     INTEGER NOT NULL,
    enqueued_at      INTEGER NOT NULL,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    finished_at      INTEGER
);

-- One task per (queue, dedup key); NULL keys never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS tq_tasks_dedup ON tq_tasks (queue, dedup_key);
CREATE INDEX IF NOT EXISTS tq_tasks_claim ON tq_tasks (queue, state, available_at);
CREATE INDEX IF NOT EXISTS tq_tasks_lease ON tq_tasks (state, lease_expires_at);
