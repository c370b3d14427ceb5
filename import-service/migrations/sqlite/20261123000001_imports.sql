-- Import jobs, their listing pages, their items, and the catalog of imported images.
-- Ids are UUIDv7 text (ordering by id is ordering by creation time); times are integer
-- milliseconds since the epoch. The same schema exists for PostgreSQL (migrations/postgres).

-- One folder import a seller asked for.
CREATE TABLE import_jobs (
    id            TEXT   PRIMARY KEY NOT NULL,
    seller_id     TEXT   NOT NULL,
    provider      TEXT   NOT NULL,                 -- google_drive | dropbox
    folder_url    TEXT   NOT NULL,                 -- as the seller pasted it
    folder        TEXT   NOT NULL,                 -- JSON FolderRef (what the clients use)
    folder_name   TEXT,
    state         TEXT   NOT NULL,                 -- running | completed | failed
    error_code    TEXT,                            -- why a job failed as a whole
    error_message TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE INDEX import_jobs_by_seller ON import_jobs (seller_id, id);

-- One page of one folder to list (a listing task each). A page that is listed adds its
-- files as items and its subfolders and next page as new listings, in one transaction.
CREATE TABLE import_listings (
    id            TEXT   PRIMARY KEY NOT NULL,
    job_id        TEXT   NOT NULL,
    parent_id     TEXT,                            -- the listing that found it; NULL for the root
    position      TEXT   NOT NULL,                 -- JSON ListingPosition
    state         TEXT   NOT NULL,                 -- pending | done | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    round         INTEGER NOT NULL DEFAULT 0,      -- bumped by "retry failed": a new task
    error_code    TEXT,
    error_message TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX import_listings_by_job ON import_listings (job_id, state);
CREATE INDEX import_listings_by_parent ON import_listings (parent_id);

-- One listed entry: a file to import, or one skipped with a reason.
CREATE TABLE import_items (
    id           TEXT   PRIMARY KEY NOT NULL,
    job_id       TEXT   NOT NULL,
    listing_id   TEXT   NOT NULL,
    seller_id    TEXT   NOT NULL,
    source_id    TEXT   NOT NULL,                  -- the provider's file id
    name         TEXT   NOT NULL,
    path         TEXT   NOT NULL,                  -- folder path from the import root
    mime_type    TEXT,
    size         INTEGER,
    checksum     TEXT   NOT NULL,                  -- provider checksum, or size:<n>
    file         TEXT,                             -- JSON RemoteFile; NULL when skipped at listing
    state        TEXT   NOT NULL,                  -- pending | importing | imported | skipped | failed
    reason       TEXT,                             -- stable code for skipped/failed (and the last retry)
    detail       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    round        INTEGER NOT NULL DEFAULT 0,
    image_id     TEXT,
    storage_path TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (job_id, source_id)
);
CREATE INDEX import_items_by_job_state ON import_items (job_id, state, id);
CREATE INDEX import_items_by_listing ON import_items (listing_id);
CREATE INDEX import_items_by_state ON import_items (state);

-- The seller's imported images (GET /images). One row per seller, source file and
-- content: re-importing the same file with the same checksum finds it here and skips.
CREATE TABLE images (
    image_id     TEXT   PRIMARY KEY NOT NULL,
    seller_id    TEXT   NOT NULL,
    source       TEXT   NOT NULL,                  -- google_drive | dropbox
    source_id    TEXT   NOT NULL,
    checksum     TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    size         INTEGER NOT NULL,
    mime_type    TEXT   NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    sha256       TEXT   NOT NULL,
    storage_path TEXT   NOT NULL,
    job_id       TEXT   NOT NULL,
    item_id      TEXT   NOT NULL,
    imported_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX images_by_source ON images (seller_id, source, source_id, checksum);
CREATE INDEX images_by_seller ON images (seller_id, image_id);
CREATE INDEX images_by_seller_source ON images (seller_id, source, image_id);
