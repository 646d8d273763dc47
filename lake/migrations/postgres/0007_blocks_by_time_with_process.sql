-- The processes with blocks in a time range (the streams a Loki query
-- selects from) are read from the time index alone when it holds the
-- process: no lookup of each block's row.
DROP INDEX IF EXISTS blocks_by_time;
CREATE INDEX blocks_by_time ON blocks (tenant, kind, max_time, min_time, process_id);
