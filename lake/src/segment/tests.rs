use super::*;

fn sample_blocks() -> Vec<EncodedBlock> {
    let payloads: [&[u8]; 2] = [b"first block payload, first block payload", b"second"];
    payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let compression = if i == 0 {
                Compression::Zstd { level: 3 }
            } else {
                Compression::None
            };
            let codec = compression.codec();
            EncodedBlock {
                block_id: BlockId::of(&[payload]),
                kind: if i == 0 {
                    BlockKind::OtlpLogs
                } else {
                    BlockKind::OtlpSpans
                },
                codec,
                data: compression.compress(payload).expect("compresses"),
                uncompressed_length: payload.len() as u32,
                event_count: 3 + i as u32,
                min_time: 1_700_000_000_000_000_000 + i as i64,
                max_time: 1_700_000_000_500_000_000 + i as i64,
            }
        })
        .collect()
}

fn build() -> (Bytes, Vec<IndexEntry>) {
    let mut builder = SegmentBuilder::with_capacity(0);
    for block in sample_blocks() {
        builder.push(&block).expect("pushes");
    }
    let (segment, entries) = builder.finish();
    let bytes = segment.to_bytes();
    assert_eq!(bytes.len() as u64, segment.len());
    (bytes, entries)
}

/// Reads the block an index entry points at in a segment's bytes.
fn read_block(segment: &[u8], entry: &IndexEntry) -> Result<Bytes> {
    let range = entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize;
    decode_block(
        "mem",
        &segment[range],
        entry.codec,
        entry.checksum,
        entry.uncompressed_length as usize,
    )
}

#[test]
fn blocks_read_back_through_index_and_ranges() {
    let (data, entries) = build();
    assert_eq!(read_index("mem", &data).expect("index reads"), entries);
    for (entry, block) in entries.iter().zip(sample_blocks()) {
        let payload = read_block(&data, entry).expect("block decodes");
        let expected = block
            .codec
            .decompress(&block.data, 1 << 20)
            .expect("decompresses");
        assert_eq!(payload, expected);
    }
}

#[test]
fn version_1_fixture_still_reads_and_is_what_we_write() {
    let fixture_path = std::path::Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo runs the tests"),
    )
    .join("test-data/segment-v1.flseg");
    let (data, entries) = build();
    if std::env::var_os("FRAMELAKE_BLESS").is_some() {
        std::fs::write(&fixture_path, &data).expect("fixture written");
    }
    let fixture =
        std::fs::read(&fixture_path).expect("fixture exists (FRAMELAKE_BLESS=1 writes it)");
    assert_eq!(
        read_index("fixture", &fixture).expect("fixture reads"),
        entries
    );
    assert_eq!(
        fixture,
        data.as_ref(),
        "the v1 writer changed its bytes: a new format needs a new version"
    );
}

#[test]
fn damage_is_detected() {
    let (data, entries) = build();
    let mut flipped = data.to_vec();
    flipped[HEADER_LEN + 1] ^= 0xff;
    let err = read_block(&flipped, &entries[0]).expect_err("checksum catches a flipped byte");
    assert!(err.to_string().contains("checksum"), "{err}");

    let mut bad_index = data.to_vec();
    let at = bad_index.len() - FOOTER_LEN - 3;
    bad_index[at] ^= 1;
    assert!(read_index("mem", &bad_index).is_err());
    assert!(read_index("mem", &data[..data.len() - 1]).is_err());
    let mut future = data.to_vec();
    future[8] = 9;
    let err = read_index("mem", &future).expect_err("unknown version");
    assert!(err.to_string().contains("version 9"), "{err}");
}

#[test]
fn lz4_blocks_of_the_wrong_length_or_garbage_are_refused() {
    let payload = b"a log line, a log line, a log line, a log line".repeat(20);
    let data = Compression::Lz4.compress(&payload).expect("compresses");
    assert_eq!(
        Codec::Lz4
            .decompress(&data, payload.len())
            .expect("decodes"),
        payload.as_slice()
    );
    for (bytes, len) in [
        (&data[..], payload.len() + 1),
        (&data[..], payload.len() - 1),
        (&data[..data.len() / 2], payload.len()),
        (&b"\xff\xff\xff\xff garbage"[..], 100),
    ] {
        let err = Codec::Lz4.decompress(bytes, len).expect_err("refused");
        assert!(err.to_string().contains("corrupt lz4 block"), "{err}");
    }
}

#[test]
fn every_compression_round_trips_through_a_segment() {
    let payload = b"a payload, a payload, a payload with some repetition in it".repeat(50);
    for text in ["none", "lz4", "zstd", "zstd:-1", "zstd:19"] {
        let compression: Compression = text.parse().expect("valid");
        assert_eq!(
            compression.to_string().split(':').next(),
            text.split(':').next()
        );
        let data = compression.compress(&payload).expect("compresses");
        let mut builder = SegmentBuilder::with_capacity(0);
        let entry = builder
            .push(&EncodedBlock {
                block_id: BlockId::of(&[&payload]),
                kind: BlockKind::OtlpLogs,
                codec: compression.codec(),
                data,
                uncompressed_length: payload.len() as u32,
                event_count: 1,
                min_time: 0,
                max_time: 0,
            })
            .expect("pushes")
            .clone();
        let (segment, _) = builder.finish();
        let decoded = read_block(&segment.to_bytes(), &entry).expect("decodes");
        assert_eq!(decoded, payload, "{text}");
    }
    for bad in ["gzip", "zstd:99", "zstd:x", "lz4:1", ""] {
        assert!(bad.parse::<Compression>().is_err(), "{bad:?}");
    }
}
