-- The W3C `traceparent` of whatever enqueued a message (an API request,
-- the library's caller, or any producer that sets it), so that the
-- message's delivery attempts join that trace when the worker exports
-- traces. Optional; a value that is not a version-00 traceparent is
-- refused, so a wrong one is said at once rather than ignored later.
-- Expand only: earlier workers do not read it.
ALTER TABLE outhook.outbox ADD COLUMN traceparent text
    CONSTRAINT outbox_traceparent CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
