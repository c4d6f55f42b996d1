-- Devices a provider reported gone (uninstalled app, expired token), and when: the Matrix
-- notify route rejects their pushkeys at once.
CREATE TABLE gone_devices (
    provider text   NOT NULL,
    cid      text   NOT NULL,
    at       bigint NOT NULL,
    PRIMARY KEY (provider, cid)
);
