-- Why a block was quarantined: its stored bytes do not read back (checksum,
-- compression or payload format) or its object is gone. NULL for a sound
-- block. Materialization and queries leave quarantined blocks out; the
-- `blocks` view shows the reason.
ALTER TABLE blocks ADD COLUMN quarantine_error TEXT;
