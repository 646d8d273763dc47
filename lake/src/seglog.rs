//! Segment logs: how the local-files store keeps segments durable cheaply.
//!
//! A file per segment costs a flush a file creation, a rename, and syncs of
//! the file and its folder; and its buffered write allocates page-cache pages
//! for bytes no one reads soon. Measured on the 2-core VM (log records over
//! OTLP, 8 exporters, ~245 KB per flush), appending each flush's segment to one
//! open file with direct I/O and syncing only its data cut the server's CPU per
//! record by 2–12% (ADR 007). So a local-files store appends the segments of one tenant
//! to a log file, one per process and hour (see `docs/segment-log-format.md`):
//!
//! - each segment is one record: a 64-byte header (magic, segment id, length,
//!   a checksum of the header), the segment as `segment.rs` writes it, and
//!   zeros up to the next 4 KiB boundary, so that every record starts aligned
//!   and is written with one `O_DIRECT` `pwrite` and one `fdatasync`;
//! - a record is appended only after the previous one is on disk, and a
//!   process never appends to a log it did not create, so only the last
//!   record of a log can be torn (its flush was never acknowledged); readers
//!   stop at the first record whose header or segment does not check.
//!
//! File systems without direct I/O (tmpfs) get buffered writes and the same syncs.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;

use crate::ids::SegmentId;
use crate::{Error, Result};

/// Every record starts at a multiple of this: direct I/O's alignment.
pub const ALIGN: u64 = 4096;
/// Bytes of a record's header; the segment follows.
pub const HEADER_LEN: u64 = 64;
const MAGIC: &[u8; 8] = b"FLAKELOG";
const VERSION: u16 = 1;

/// One record's header, as [`scan`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub segment: SegmentId,
    /// Where the segment starts in the log (after the record's header).
    pub offset: u64,
    /// The segment's length.
    pub length: u64,
}

impl Record {
    /// Where the next record starts.
    pub fn end(&self) -> u64 {
        (self.offset + self.length).next_multiple_of(ALIGN)
    }
}

fn header(segment: SegmentId, length: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    // 10..16: flags u16 = 0, reserved u32 = 0.
    h[16..32].copy_from_slice(segment.as_bytes());
    h[32..40].copy_from_slice(&length.to_le_bytes());
    // 40..56 reserved.
    let sum = xxhash_rust::xxh3::xxh3_64(&h[..56]);
    h[56..64].copy_from_slice(&sum.to_le_bytes());
    h
}

/// The record whose header starts `bytes` (read at `at` in its log), if the
/// header checks. Readers go from record to record ([`Record::end`]) and stop
/// at the first header that does not check, or whose segment does not (the
/// segment's footer and index checksums): a torn last record.
pub fn read_header(bytes: &[u8], at: u64) -> Option<Record> {
    let h = bytes.get(..HEADER_LEN as usize)?;
    let sum = u64::from_le_bytes(h[56..64].try_into().ok()?);
    if &h[0..8] != MAGIC || xxhash_rust::xxh3::xxh3_64(&h[..56]) != sum {
        return None;
    }
    if u16::from_le_bytes([h[8], h[9]]) != VERSION {
        return None;
    }
    Some(Record {
        segment: SegmentId::from_slice(&h[16..32]).ok()?,
        offset: at + HEADER_LEN,
        length: u64::from_le_bytes(h[32..40].try_into().ok()?),
    })
}

/// An open log this process appends to.
#[derive(Debug)]
pub struct SegmentLog {
    file: File,
    /// Where the next record goes.
    end: u64,
    /// An aligned buffer a record is assembled in (direct I/O reads from it).
    buffer: AlignedBuffer,
}

impl SegmentLog {
    /// Creates a new, empty log at `path` (which must not exist); the caller
    /// syncs the folder that holds it before acknowledging what it holds.
    pub fn create(path: &Path) -> Result<Self> {
        let open = |direct: bool| {
            let mut options = File::options();
            options.write(true).create_new(true);
            if direct {
                options.custom_flags(libc::O_DIRECT);
            }
            options.open(path)
        };
        let file = match open(true) {
            Ok(file) => file,
            // tmpfs and some others refuse O_DIRECT.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(false)?,
            Err(e) => return Err(e.into()),
        };
        Ok(SegmentLog {
            file,
            end: 0,
            buffer: AlignedBuffer::default(),
        })
    }

    /// Bytes written so far (records and padding).
    pub fn len(&self) -> u64 {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Appends one segment (given as its parts, in order) and syncs it: when
    /// this returns, the record is on disk. Answers where the segment starts.
    /// On an error, the log is left as it was (a retry appends at the same place).
    pub fn append(&mut self, segment: SegmentId, parts: &[Bytes]) -> Result<Record> {
        let length: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let record = Record {
            segment,
            offset: self.end + HEADER_LEN,
            length,
        };
        let size = usize::try_from(record.end() - self.end)
            .map_err(|_| Error::InvalidInput(format!("segment of {length} bytes")))?;
        let buf = self.buffer.take(size);
        buf[..HEADER_LEN as usize].copy_from_slice(&header(segment, length));
        let mut at = HEADER_LEN as usize;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        buf[at..].fill(0);
        write_all_at(&self.file, buf, self.end)?;
        self.file.sync_data()?;
        self.end = record.end();
        Ok(record)
    }
}

fn write_all_at(file: &File, mut buf: &[u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, at) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A heap buffer aligned to [`ALIGN`], grown as needed and reused.
#[derive(Debug, Default)]
struct AlignedBuffer {
    /// Whole 4 KiB pages: the alignment comes from the element type.
    pages: Vec<Page>,
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; ALIGN as usize]);

impl AlignedBuffer {
    /// The first `size` bytes (a multiple of [`ALIGN`]), holding whatever the
    /// last use left there.
    fn take(&mut self, size: usize) -> &mut [u8] {
        let pages = size / ALIGN as usize;
        debug_assert_eq!(pages * ALIGN as usize, size);
        if self.pages.len() < pages {
            self.pages.resize(pages, Page([0; ALIGN as usize]));
        }
        let ptr = self.pages.as_mut_ptr().cast::<u8>();
        // SAFETY: `pages` holds at least `pages` initialized `Page`s, plain bytes with no
        // padding, so they are `size` initialized bytes borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(ptr, size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of a log up to the first that does not check, as recovery
    /// reads them; `check` stands for the segment's own checks.
    fn scan(log: &[u8], check: impl Fn(&[u8]) -> bool) -> Vec<Record> {
        let mut records = Vec::new();
        let mut at = 0u64;
        while let Some(record) = log
            .get(at as usize..)
            .and_then(|rest| read_header(rest, at))
        {
            match log.get(record.offset as usize..(record.offset + record.length) as usize) {
                Some(segment) if check(segment) => {
                    records.push(record);
                    at = record.end();
                }
                _ => break,
            }
        }
        records
    }

    fn parts(n: usize, byte: u8) -> Vec<Bytes> {
        vec![
            Bytes::from(vec![byte; n / 2]),
            Bytes::from(vec![byte; n - n / 2]),
        ]
    }

    #[test]
    fn records_are_aligned_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.fllog");
        let mut log = SegmentLog::create(&path).expect("creates");
        let sizes = [1usize, 4096 - 64, 4096 - 63, 100_000];
        let mut written = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let record = log
                .append(SegmentId::new(), &parts(n, i as u8 + 1))
                .expect("appends");
            assert_eq!((record.offset - HEADER_LEN) % ALIGN, 0);
            assert_eq!(record.length, n as u64);
            written.push(record);
        }
        assert_eq!(log.len(), written.last().expect("written").end());
        let bytes = std::fs::read(&path).expect("reads");
        assert_eq!(bytes.len() as u64, log.len());
        let read = scan(&bytes, |_| true);
        assert_eq!(read, written);
        for (i, r) in read.iter().enumerate() {
            let segment = &bytes[r.offset as usize..(r.offset + r.length) as usize];
            assert!(segment.iter().all(|&b| b == i as u8 + 1));
        }
    }

    #[test]
    fn a_torn_last_record_ends_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.fllog");
        let mut log = SegmentLog::create(&path).expect("creates");
        let first = log
            .append(SegmentId::new(), &parts(5000, 7))
            .expect("appends");
        let second = log
            .append(SegmentId::new(), &parts(5000, 8))
            .expect("appends");
        let whole = std::fs::read(&path).expect("reads");
        let whole_segment = |s: &[u8]| s.iter().all(|&b| b == 7 || b == 8);

        // The second record cut short: its header checks, its segment does not.
        let cut = &whole[..(second.offset + 100) as usize];
        assert_eq!(scan(cut, |_| true), vec![first]);
        // Its bytes not all written (a page of zeros inside).
        let mut holed = whole.clone();
        holed[(second.offset + 10) as usize] = 0;
        assert_eq!(scan(&holed, whole_segment), vec![first]);
        // A header that does not check, and zeros where a header would be.
        let mut bad = whole.clone();
        bad[(second.offset - HEADER_LEN + 20) as usize] ^= 1;
        assert_eq!(scan(&bad, whole_segment), vec![first]);
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 8192]);
        assert_eq!(scan(&zeros, whole_segment), vec![first, second]);
    }

    #[test]
    fn an_existing_log_is_never_reopened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.fllog");
        SegmentLog::create(&path).expect("creates");
        let err = SegmentLog::create(&path).expect_err("exists");
        assert!(err.to_string().contains("exists"), "{err}");
    }
}
