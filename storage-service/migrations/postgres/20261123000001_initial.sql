-- Uploads announced by the App Service and waiting for their bytes.
CREATE TABLE pending_uploads (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    -- pending → receiving (one PUT holds the claim) → completed; a failed PUT returns to pending.
    state        TEXT NOT NULL CHECK (state IN ('pending', 'receiving', 'completed')),
    claim_id     TEXT,
    claimed_at   BIGINT,
    image_id     TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX pending_uploads_expires_at ON pending_uploads (expires_at);

-- Stored images. A row is 'committing' while its object is being made visible, and
-- 'complete' once it is; the sweeper removes 'committing' rows (and objects) left by a crash.
CREATE TABLE images (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('committing', 'complete')),
    source       TEXT NOT NULL,
    source_ref   TEXT,
    ingest_key   TEXT,
    upload_id    TEXT UNIQUE,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    md5          TEXT,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    storage_key  TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    completed_at BIGINT
);
-- One image per (owner, ingest key): a retried ingest finds the first one.
CREATE UNIQUE INDEX images_owner_ingest_key ON images (owner_id, ingest_key);
CREATE INDEX images_state_created_at ON images (state, created_at);

-- Nonces of signed service requests, remembered for the replay window (shared by replicas).
CREATE TABLE request_nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX request_nonces_expires_at ON request_nonces (expires_at);
