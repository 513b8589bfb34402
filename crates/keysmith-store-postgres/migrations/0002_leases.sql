-- Version 2: leases, so that background work (the sweeper, the key
-- follower, one hotel's 3RPMS worker) runs on one keysmith at a time when
-- several share this database. A row is a lease: who holds it and until
-- when, by the database's clock (now()), never a replica's. See
-- src/lease.rs.

CREATE TABLE leases (
    name text COLLATE "C" PRIMARY KEY,
    holder text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL
);
