-- The message id on every request. Standard Webhooks carries it in
-- `webhook-id`; for the other schemes Outhook adds this header so that a
-- receiver can tell a retry from a new event. NULL: `webhook-id`; '': none
-- (for a provider that needs its exact header set); else the header's name.
ALTER TABLE outhook.endpoint ADD COLUMN message_id_header text;
