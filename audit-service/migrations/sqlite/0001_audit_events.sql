-- One row per audit event id: a redelivered event is not stored twice.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    service TEXT NOT NULL,
    seller_id TEXT,
    request_id TEXT,
    subject_id TEXT,
    reason TEXT,
    body TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time_ms, id);
CREATE INDEX audit_events_seller_time ON audit_events (seller_id, time_ms, id);
CREATE INDEX audit_events_type_time ON audit_events (type, time_ms, id);
