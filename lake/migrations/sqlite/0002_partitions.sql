-- Parquet partitions: a view's rows, materialized from blocks (level 0) or
-- compacted from partitions (level 1 and up). Object key from the id (see paths.rs).
CREATE TABLE partitions (
    tenant          TEXT     NOT NULL,
    partition_id    BLOB    NOT NULL,
    view_name       TEXT     NOT NULL,
    level           SMALLINT NOT NULL,
    min_time        BIGINT   NOT NULL,
    max_time        BIGINT   NOT NULL,
    min_insert_time BIGINT   NOT NULL,
    max_insert_time BIGINT   NOT NULL,
    row_count       BIGINT   NOT NULL,
    size            BIGINT   NOT NULL,
    insert_time     BIGINT   NOT NULL,
    PRIMARY KEY (tenant, partition_id)
);
-- Event-time overlap lookups per tenant and view.
CREATE INDEX partitions_by_time ON partitions (tenant, view_name, max_time, min_time);

-- The partition holding a block's rows; NULL until materialized.
ALTER TABLE blocks ADD COLUMN partition_id BLOB;
CREATE INDEX blocks_pending ON blocks (tenant, kind, insert_time) WHERE partition_id IS NULL;
CREATE INDEX blocks_by_partition ON blocks (tenant, partition_id) WHERE partition_id IS NOT NULL;
