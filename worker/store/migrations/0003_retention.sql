-- Retention: the raw XML of old INSi exchanges can be purged, while the
-- row (when, which call, which result, which certificate) stays.

ALTER TABLE insi_calls ALTER COLUMN request_xml DROP NOT NULL;
ALTER TABLE insi_calls ADD COLUMN raw_purged_at timestamptz;

-- Raw XML is missing only once purged. NOT VALID skips re-checking the
-- existing rows, which the former NOT NULL already guaranteed.
ALTER TABLE insi_calls ADD CONSTRAINT insi_calls_raw_kept_until_purged
    CHECK (request_xml IS NOT NULL OR raw_purged_at IS NOT NULL) NOT VALID;

-- What a purge still has to visit: exchanges whose raw XML is kept.
CREATE INDEX insi_calls_raw_kept ON insi_calls (started_at)
    WHERE raw_purged_at IS NULL;

-- Sent events by the time they were sent, for their deletion.
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
