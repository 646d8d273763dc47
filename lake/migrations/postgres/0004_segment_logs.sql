-- Where a segment's bytes are: NULL, the segment is an object of its own (its key
-- derives from its id, see paths.rs); else the log object holding it and the
-- offset of its first byte there (block offsets stay relative to the segment).
ALTER TABLE segments ADD COLUMN object TEXT;
ALTER TABLE segments ADD COLUMN object_offset BIGINT NOT NULL DEFAULT 0;
-- Retention deletes a log once no segment is left in it.
CREATE INDEX segments_by_object ON segments (tenant, object) WHERE object IS NOT NULL;
