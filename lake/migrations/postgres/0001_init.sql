-- framelake catalog, PostgreSQL. Times are ns since the Unix epoch (UTC); ids are 16 raw bytes.

CREATE TABLE processes (
    tenant       TEXT     NOT NULL,
    process_id   BYTEA    NOT NULL,
    source       SMALLINT NOT NULL,
    service_name TEXT     NOT NULL,
    properties   BYTEA    NOT NULL,
    insert_time  BIGINT   NOT NULL,
    PRIMARY KEY (tenant, process_id)
);

CREATE TABLE streams (
    tenant      TEXT     NOT NULL,
    stream_id   BYTEA    NOT NULL,
    process_id  BYTEA    NOT NULL,
    kind        SMALLINT NOT NULL,
    name        TEXT     NOT NULL,
    insert_time BIGINT   NOT NULL,
    PRIMARY KEY (tenant, stream_id)
);
CREATE INDEX streams_by_process ON streams (tenant, process_id);

CREATE TABLE segments (
    tenant      TEXT    NOT NULL,
    segment_id  BYTEA   NOT NULL,
    size        BIGINT  NOT NULL,
    block_count INTEGER NOT NULL,
    insert_time BIGINT  NOT NULL,
    PRIMARY KEY (tenant, segment_id)
);

CREATE TABLE blocks (
    tenant              TEXT     NOT NULL,
    block_id            BYTEA    NOT NULL,
    kind                SMALLINT NOT NULL,
    format              SMALLINT NOT NULL,
    process_id          BYTEA    NOT NULL,
    stream_id           BYTEA    NOT NULL,
    segment_id          BYTEA    NOT NULL,
    byte_offset         BIGINT   NOT NULL,
    byte_length         BIGINT   NOT NULL,
    uncompressed_length BIGINT   NOT NULL,
    codec               SMALLINT NOT NULL,
    checksum            BIGINT   NOT NULL,
    event_count         BIGINT   NOT NULL,
    min_time            BIGINT   NOT NULL,
    max_time            BIGINT   NOT NULL,
    insert_time         BIGINT   NOT NULL,
    PRIMARY KEY (tenant, block_id)
);
-- Event-time overlap lookups per tenant and kind.
CREATE INDEX blocks_by_time ON blocks (tenant, kind, max_time, min_time);
-- Insert-time scans (materialization, retention) per tenant and kind.
CREATE INDEX blocks_by_insert ON blocks (tenant, kind, insert_time);
CREATE INDEX blocks_by_stream ON blocks (tenant, stream_id, min_time);
