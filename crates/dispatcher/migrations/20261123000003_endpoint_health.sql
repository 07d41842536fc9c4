-- Each endpoint's health, kept up to date by the workers: when it last
-- answered 2xx, when it last failed, and how many attempts in a row have
-- failed since. Workers add up their results in memory and write them about
-- once a second (without waiting for the WAL flush), so keeping it costs the
-- delivery path nothing; the attempt log stays the record of truth.
-- No foreign key: a worker may still report on an endpoint being deleted,
-- and endpoint_delete removes the row.
CREATE TABLE outhook.endpoint_health (
    endpoint_id     uuid PRIMARY KEY,
    last_attempt_at timestamptz NOT NULL,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    failure_streak  integer NOT NULL DEFAULT 0
);

-- Attempts per endpoint, hour and outcome, added up the same way: the
-- charts and the stats read 24 or 168 rows per outcome instead of scanning
-- the attempt log. Pruned with the deliveries.
CREATE TABLE outhook.endpoint_hourly (
    endpoint_id uuid NOT NULL,
    hour        timestamptz NOT NULL,
    outcome     text NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (endpoint_id, hour, outcome)
);
