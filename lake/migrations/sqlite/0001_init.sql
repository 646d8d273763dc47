-- framelake catalog, SQLite. Times are ns since the Unix epoch (UTC); ids are 16 raw bytes.

CREATE TABLE processes (
    tenant       TEXT     NOT NULL,
    process_id   BLOB    NOT NULL,
    source       INTEGER NOT NULL,
    service_name TEXT     NOT NULL,
    properties   BLOB    NOT NULL,
    insert_time  INTEGER  NOT NULL,
    PRIMARY KEY (tenant, process_id)
);

CREATE TABLE streams (
    tenant      TEXT     NOT NULL,
    stream_id   BLOB    NOT NULL,
    process_id  BLOB    NOT NULL,
    kind        INTEGER NOT NULL,
    name        TEXT     NOT NULL,
    insert_time INTEGER  NOT NULL,
    PRIMARY KEY (tenant, stream_id)
);
CREATE INDEX streams_by_process ON streams (tenant, process_id);

CREATE TABLE segments (
    tenant      TEXT    NOT NULL,
    segment_id  BLOB   NOT NULL,
    size        INTEGER NOT NULL,
    block_count INTEGER NOT NULL,
    insert_time INTEGER NOT NULL,
    PRIMARY KEY (tenant, segment_id)
);

CREATE TABLE blocks (
    tenant              TEXT     NOT NULL,
    block_id            BLOB    NOT NULL,
    kind                INTEGER NOT NULL,
    format              INTEGER NOT NULL,
    process_id          BLOB    NOT NULL,
    stream_id           BLOB    NOT NULL,
    segment_id          BLOB    NOT NULL,
    byte_offset         INTEGER  NOT NULL,
    byte_length         INTEGER  NOT NULL,
    uncompressed_length INTEGER  NOT NULL,
    codec               INTEGER NOT NULL,
    checksum            INTEGER  NOT NULL,
    event_count         INTEGER  NOT NULL,
    min_time            INTEGER  NOT NULL,
    max_time            INTEGER  NOT NULL,
    insert_time         INTEGER  NOT NULL,
    PRIMARY KEY (tenant, block_id)
);
-- Event-time overlap lookups per tenant and kind.
CREATE INDEX blocks_by_time ON blocks (tenant, kind, max_time, min_time);
-- Insert-time scans (materialization, retention) per tenant and kind.
CREATE INDEX blocks_by_insert ON blocks (tenant, kind, insert_time);
CREATE INDEX blocks_by_stream ON blocks (tenant, stream_id, min_time);
