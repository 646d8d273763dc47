-- Objects no catalog row points to any more (partitions replaced by
-- compaction), deleted once no query that listed them can still be reading.
CREATE TABLE garbage (
    tenant       TEXT   NOT NULL,
    path         TEXT   NOT NULL,
    delete_after BIGINT NOT NULL,
    PRIMARY KEY (tenant, path)
);
CREATE INDEX garbage_due ON garbage (delete_after);

-- Which partitions of a source view an aggregate view has reduced: their rows
-- are counted in the aggregate's own partitions, so queries of the aggregate
-- read them from there and compute the rest (pending blocks, partitions not
-- reduced yet) on the fly.
CREATE TABLE reductions (
    tenant       TEXT NOT NULL,
    target       TEXT NOT NULL,
    partition_id BYTEA NOT NULL,
    PRIMARY KEY (tenant, target, partition_id)
);
CREATE INDEX reductions_by_partition ON reductions (tenant, partition_id);

-- Compaction picks a view's partitions of one level, oldest first.
CREATE INDEX partitions_by_level ON partitions (tenant, view_name, level, min_insert_time);
