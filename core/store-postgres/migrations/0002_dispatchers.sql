-- Which nodes run a dispatcher for which provider, and when they last said so: a provider's
-- `qps` is split among the nodes seen lately.
CREATE TABLE dispatchers (
    provider text   NOT NULL,
    node     text   NOT NULL,
    seen_at  bigint NOT NULL,
    PRIMARY KEY (provider, node)
);
