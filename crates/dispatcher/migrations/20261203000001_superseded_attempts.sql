-- An attempt whose result arrived after its delivery had moved on (re-queued
-- by an operator, its lease run out and taken over by another claim, or the
-- claim itself forgotten in a PostgreSQL crash) is logged all the same: the
-- request went out, and the receiver may have acted on it. Its result
-- changed nothing, and this says so. Adding a column with a constant
-- default rewrites nothing.
ALTER TABLE outhook.attempt ADD COLUMN superseded boolean NOT NULL DEFAULT false;
