-- keysmith's schema, version 1. Every value that can hold a secret (a key
-- with its credentials, a reservation, an idempotency answer, an audit
-- record, a change record, a driver's state) is in a `record`/`value`
-- column, sealed as the sled store seals it; the other columns hold ids
-- and instants, which the scans and indexes need. Ids compare bytewise
-- (COLLATE "C"), as they do in sled, so pages follow the same order.
-- Instants are microseconds since the Unix epoch.

CREATE TABLE keysmith_meta (
    name text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- Data keys, wrapped by the key-encryption key (never stored here).
CREATE TABLE data_keys (
    id integer PRIMARY KEY,
    wrapped bytea NOT NULL
);

CREATE TABLE keys (
    property_id text COLLATE "C" NOT NULL,
    key_id text COLLATE "C" NOT NULL,
    holder_id text COLLATE "C" NOT NULL,
    reservation_key text COLLATE "C",
    window_ends_at bigint NOT NULL,
    -- When the key ended (revoked, or expired and swept); NULL while live.
    ended_at bigint,
    record bytea NOT NULL,
    PRIMARY KEY (property_id, key_id)
);
CREATE INDEX keys_live ON keys (property_id, key_id) WHERE ended_at IS NULL;
CREATE INDEX keys_by_holder ON keys (property_id, holder_id, key_id);
CREATE INDEX keys_by_reservation ON keys (property_id, reservation_key, key_id)
    WHERE reservation_key IS NOT NULL;
-- The sweeper's walks: live keys by the end of their window, ended keys by
-- when they ended.
CREATE INDEX keys_by_window_end ON keys (window_ends_at, property_id, key_id)
    WHERE ended_at IS NULL;
CREATE INDEX keys_by_ended ON keys (ended_at, property_id, key_id)
    WHERE ended_at IS NOT NULL;

CREATE TABLE key_entrances (
    property_id text COLLATE "C" NOT NULL,
    entrance_id text COLLATE "C" NOT NULL,
    key_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (property_id, entrance_id, key_id),
    FOREIGN KEY (property_id, key_id) REFERENCES keys ON DELETE CASCADE
);
CREATE INDEX key_entrances_of_key ON key_entrances (property_id, key_id);

CREATE TABLE reservations (
    property_id text COLLATE "C" NOT NULL,
    reservation_key text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (property_id, reservation_key)
);

CREATE TABLE idempotency (
    property_id text COLLATE "C" NOT NULL,
    request_id text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (property_id, request_id)
);
CREATE INDEX idempotency_by_created ON idempotency (created_at);

-- Audit ids are ULIDs: they sort by the time the record was made.
CREATE TABLE audit (
    property_id text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (property_id, id)
);
CREATE INDEX audit_by_id ON audit (id);

-- Each property's change log, numbered without gaps from its head row,
-- which the committing transaction updates (and so holds) until it commits.
CREATE TABLE change_heads (
    property_id text COLLATE "C" PRIMARY KEY,
    head bigint NOT NULL,
    purged_through bigint NOT NULL DEFAULT 0
);
CREATE TABLE changes (
    property_id text COLLATE "C" NOT NULL,
    sequence bigint NOT NULL,
    at bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (property_id, sequence)
);

CREATE TABLE driver_state (
    namespace text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (namespace, key)
);
