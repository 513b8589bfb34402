-- Version 3: rate budgets shared by every keysmith on this database (the
-- 3RPMS account's requests a minute), so that N replicas spend one budget,
-- not N. A row is a budget in GCRA form: the theoretical arrival time of
-- the next request, microseconds by the database's clock. See src/rate.rs.

CREATE TABLE rate_budgets (
    name text COLLATE "C" PRIMARY KEY,
    tat_micros bigint NOT NULL
);
