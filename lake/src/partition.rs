//! Partition objects: how a view's rows are written to Parquet and read back.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding as ParquetEncoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::{Error, Result};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per Parquet data page, at most. A query of a narrow time range
/// (the newest lines, a trace by id) inflates whole pages of every column it
/// reads wherever a stream's rows overlap the range, so pages are smaller
/// than Parquet's usual 20k rows: a fifth of the size costs 2% more bytes at
/// rest.
pub const PAGE_ROWS: usize = 4096;

/// How a partition object is written.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    /// zstd level: 1 when materializing (fast; LZ4 was no faster and 16%
    /// bigger), 3 when compacting.
    pub zstd_level: i32,
    /// zstd level of free text (log bodies, status messages). Compaction
    /// spends more on them (7): 17% fewer bytes, and a scan of them (`LIKE`,
    /// the commonest question of logs) inflates them a fifth faster, as
    /// zstd's higher levels leave fewer, longer matches to copy.
    pub free_text_zstd_level: i32,
    /// Distinct trace ids a row group holds, for sizing the bloom filter on
    /// `trace_id` (so a trace id lookup skips row groups without it).
    pub trace_ids_per_row_group: u64,
}

/// Writes rows as one Parquet object: statistics per page, the bloom filter
/// on `trace_id` where there is one. Returns the bytes and the row count.
pub fn write(
    schema: SchemaRef,
    batches: &[RecordBatch],
    encoding: Encoding,
) -> Result<(Bytes, u64)> {
    let mut writer = Writer::new(schema, encoding, 0)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

/// Columns of free text.
const FREE_TEXT: [&str; 2] = ["body", "status_message"];

/// Text columns that keep statistics: a sort key gathers their values.
const SORTED_TEXT: [&str; 2] = ["service_name", "name"];

/// A Parquet object being written batch by batch: only the row group being
/// encoded and the bytes written are held, not the rows.
pub struct Writer {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

impl Writer {
    /// A writer whose output buffer starts with `capacity` bytes (an estimate
    /// of the object's size saves copying it as it grows).
    pub fn new(schema: SchemaRef, encoding: Encoding, capacity: usize) -> Result<Self> {
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(encoding.zstd_level)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_row_count_limit(PAGE_ROWS);
        // Timestamps in delta encoding: close times (a stream's, in sorted or
        // received order) take a byte or two instead of eight before zstd.
        for field in schema.fields() {
            // Random ids never repeat enough for a dictionary: trying one is waste.
            if ["trace_id", "span_id", "parent_span_id"].contains(&field.name().as_str()) {
                properties =
                    properties.set_column_dictionary_enabled(field.name().as_str().into(), false);
            }
            if matches!(field.data_type(), DataType::Timestamp(_, _)) {
                properties = properties
                    .set_column_dictionary_enabled(field.name().as_str().into(), false)
                    .set_column_encoding(
                        field.name().as_str().into(),
                        ParquetEncoding::DELTA_BINARY_PACKED,
                    );
            }
        }
        // Statistics where a predicate can use them: top-level columns. Not
        // the leaves of maps and lists (attributes, events), which pruning
        // never reads, nor text whose values mix in every row group (bodies,
        // severity and scope names: min and max span everything, and
        // computing them was a tenth of the CPU); strings keep them where
        // the sort key gathers values (service, span and metric names).
        // Free text has no dictionary either: it rarely repeats whole.
        let leaves = ArrowSchemaConverter::new().convert(&schema)?;
        for leaf in leaves.columns() {
            let path = leaf.path().parts();
            let top = schema.field_with_name(&path[0])?;
            let mixed_text = matches!(top.data_type(), DataType::Utf8)
                && !SORTED_TEXT.contains(&path[0].as_str());
            if path.len() > 1 || mixed_text {
                properties = properties
                    .set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
            }
            if FREE_TEXT.contains(&path[0].as_str()) {
                properties = properties
                    .set_column_dictionary_enabled(leaf.path().clone(), false)
                    .set_column_compression(
                        leaf.path().clone(),
                        Compression::ZSTD(ZstdLevel::try_new(encoding.free_text_zstd_level)?),
                    );
            }
        }
        if schema.column_with_name("trace_id").is_some() {
            // Sized for the ids a row group holds (the default, a million at 5%,
            // is ~0.8 MB per row group, which a lookup reads for every one).
            properties = properties
                .set_column_bloom_filter_enabled("trace_id".into(), true)
                .set_column_bloom_filter_max_ndv(
                    "trace_id".into(),
                    encoding.trace_ids_per_row_group,
                )
                .set_column_bloom_filter_fpp("trace_id".into(), 0.01);
        }
        let writer = ArrowWriter::try_new(
            Vec::with_capacity(capacity),
            schema,
            Some(properties.build()),
        )?;
        Ok(Writer { writer, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes the object: its bytes and its row count.
    pub fn finish(self) -> Result<(Bytes, u64)> {
        let out = self.writer.into_inner()?;
        Ok((out.into(), self.rows))
    }
}

/// Reads a whole Parquet object back into rows.
pub fn read(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(8192).build())?
        .map(|batch| batch.map_err(Error::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ArrowReaderOptions;
    use parquet::file::metadata::PageIndexPolicy;

    use super::*;

    /// A narrow range reads only the pages around it: none holds more than
    /// `PAGE_ROWS` rows, in any column.
    #[test]
    fn pages_hold_at_most_page_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("body", DataType::Utf8, false),
        ]));
        let rows = 3 * PAGE_ROWS + 100;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("line {i}")),
                )),
            ],
        )
        .expect("a batch");
        let encoding = Encoding {
            zstd_level: 1,
            free_text_zstd_level: 1,
            trace_ids_per_row_group: 1,
        };
        let (bytes, written) = write(schema, &[batch], encoding).expect("written");
        assert_eq!(written, rows as u64);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)
            .expect("a Parquet object");
        let offsets = reader.metadata().offset_index().expect("an offset index");
        for column in &offsets[0] {
            let starts: Vec<i64> = column
                .page_locations()
                .iter()
                .map(|p| p.first_row_index)
                .chain([rows as i64])
                .collect();
            assert_eq!(starts.len(), 5, "{starts:?}");
            assert!(
                starts.windows(2).all(|w| w[1] - w[0] <= PAGE_ROWS as i64),
                "{starts:?}"
            );
        }
    }
}
