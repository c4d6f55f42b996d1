-- pushgate's schema, version 1. Ids are the binary forms of pushgate's ids (a message id is
-- 16 bytes, a delivery is its message id and index); times are epoch milliseconds; records
-- are the JSON encoding the other backends store. Rows with `claimed_by` / `claim_until`
-- are due work: a node claims them with FOR UPDATE SKIP LOCKED and holds them until
-- `claim_until` (0: unclaimed).

CREATE TABLE bindings (
    app      text   NOT NULL,
    provider text   NOT NULL,
    cid      text   NOT NULL,
    alias    text   NOT NULL,
    bound_at bigint NOT NULL,
    data     bytea,
    seq      bigserial,
    PRIMARY KEY (app, provider, cid)
);
CREATE INDEX bindings_by_alias ON bindings (app, alias, seq);

CREATE TABLE messages (
    id     bytea PRIMARY KEY,
    record bytea NOT NULL
);

CREATE TABLE deliveries (
    message bytea   NOT NULL,
    idx     integer NOT NULL,
    version bigint  NOT NULL,
    record  bytea   NOT NULL,
    PRIMARY KEY (message, idx)
);

CREATE TABLE outbox (
    provider    text    NOT NULL,
    due         bigint  NOT NULL,
    message     bytea   NOT NULL,
    idx         integer NOT NULL,
    app         text    NOT NULL,
    claimed_by  text,
    claim_until bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, due, message, idx)
);
CREATE INDEX outbox_by_delivery ON outbox (message, idx);
CREATE INDEX outbox_by_app ON outbox (app);

CREATE TABLE refs (
    provider  text    NOT NULL,
    reference text    NOT NULL,
    message   bytea   NOT NULL,
    idx       integer NOT NULL,
    PRIMARY KEY (provider, reference)
);

CREATE TABLE idempotency (
    app        text  NOT NULL,
    request_id text  NOT NULL,
    record     bytea NOT NULL,
    PRIMARY KEY (app, request_id)
);

CREATE TABLE timers (
    at          bigint  NOT NULL,
    message     bytea   NOT NULL,
    purge       boolean NOT NULL,
    claimed_by  text,
    claim_until bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (at, message)
);
CREATE INDEX timers_by_message ON timers (message);

CREATE TABLE events (
    due         bigint NOT NULL,
    id          bytea  NOT NULL,
    record      bytea  NOT NULL,
    claimed_by  text,
    claim_until bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (due, id)
);
CREATE INDEX events_by_id ON events (id);

CREATE TABLE early_receipts (
    provider  text  NOT NULL,
    reference text  NOT NULL,
    record    bytea NOT NULL,
    PRIMARY KEY (provider, reference)
);

CREATE TABLE upstream (
    provider text  NOT NULL,
    msgid    text  NOT NULL,
    record   bytea NOT NULL,
    PRIMARY KEY (provider, msgid)
);

CREATE TABLE ordered_events (
    key    text  NOT NULL,
    id     bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (key, id)
);

CREATE TABLE removals (
    at       bigint NOT NULL,
    id       bytea  NOT NULL,
    kind     text   NOT NULL,
    provider text   NOT NULL,
    name     text   NOT NULL,
    PRIMARY KEY (at, id)
);

CREATE TABLE alias_mirrors (
    provider    text   NOT NULL,
    app         text   NOT NULL,
    cid         text   NOT NULL,
    id          bytea  NOT NULL,
    due         bigint NOT NULL,
    record      bytea  NOT NULL,
    claimed_by  text,
    claim_until bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, app, cid)
);
CREATE INDEX alias_mirrors_by_due ON alias_mirrors (due);
CREATE INDEX alias_mirrors_by_id ON alias_mirrors (id);

-- Secrets every node shares (the key of device-ack tokens).
CREATE TABLE secrets (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);
