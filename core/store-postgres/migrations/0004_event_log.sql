-- Each app's event log: what GET /v1/apps/{app}/events streams and resumes from
-- (Last-Event-ID), kept for [events] retention_seconds.
CREATE TABLE event_log (
    app        text   NOT NULL,
    id         bytea  NOT NULL,
    created_at bigint NOT NULL,
    record     bytea  NOT NULL,
    PRIMARY KEY (app, id)
);
CREATE INDEX event_log_by_time ON event_log (created_at);
