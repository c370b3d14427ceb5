-- Products: one row per product a seller created. Ids are UUIDv7 text, so ordering by
-- id is ordering by creation time (keyset pagination uses it).
CREATE TABLE products (
    id              TEXT    COLLATE "C" PRIMARY KEY NOT NULL,
    seller_id       TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    price_minor     BIGINT  NOT NULL CHECK (price_minor >= 0),
    currency        TEXT    NOT NULL,
    image_id        TEXT    NOT NULL,
    -- Idempotency-Key of the creating request, and the SHA-256 of its validated body.
    idempotency_key TEXT,
    request_hash    TEXT,
    created_at      BIGINT  NOT NULL
);

CREATE INDEX products_by_seller ON products (seller_id, id);
CREATE UNIQUE INDEX products_idempotency ON products (seller_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
