//! Typed identifiers: tenants, blocks, segments, processes and streams.
//!
//! Every id parses back from its string form, so ids read from URLs, object keys
//! and catalog rows are checked once at the edge.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A tenant: the wall around every row, object key and query.
///
/// 1 to 64 characters of `[A-Za-z0-9_.-]`, not `.` or `..`, so that it is safe in
/// object keys and URLs as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant used when authentication is off and no `X-Scope-OrgID` is sent.
    pub fn default_tenant() -> Self {
        TenantId("default".to_owned())
    }

    /// The tenant name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let valid_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if s.is_empty() || s.len() > 64 || !valid_chars || s == "." || s == ".." {
            return Err(Error::InvalidInput(format!(
                "invalid tenant id {s:?}: use 1 to 64 characters of letters, digits, '_', '-' or '.'"
            )));
        }
        Ok(TenantId(s.to_owned()))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// The id of some content: the 128-bit xxh3 hash of its parts, in order.
            pub fn of(parts: &[&[u8]]) -> Self {
                let mut hasher = xxhash_rust::xxh3::Xxh3::new();
                for part in parts {
                    hasher.update(&(part.len() as u64).to_le_bytes());
                    hasher.update(part);
                }
                $name(hasher.digest128().to_be_bytes())
            }

            /// The raw bytes, as stored in the catalog.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Reads an id from its 16 stored bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                let array: [u8; 16] = bytes.try_into().map_err(|_| {
                    Error::InvalidInput(format!(
                        "{} must be 16 bytes, got {}",
                        stringify!($name),
                        bytes.len()
                    ))
                })?;
                Ok($name(array))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                let bad = || Error::InvalidInput(format!("{} must be 32 hex digits, got {s:?}", stringify!($name)));
                if s.len() != 32 || !s.is_ascii() {
                    return Err(bad());
                }
                let mut out = [0u8; 16];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                Ok($name(out))
            }
        }
    };
}

hash_id!(
    /// A block: derived from its tenant, kind and uncompressed content, so that a
    /// retried request maps to the same block and is indexed once.
    BlockId
);
impl BlockId {
    /// The id of a block whose earliest event is at `min_time` (ns since the
    /// Unix epoch): that time in milliseconds as 6 big-endian bytes, then the
    /// first 10 bytes of [`BlockId::of`] its parts. Still derived from the
    /// content only, so a retried request maps to the same id; and blocks of
    /// the same moment sort together, so the catalog's index on ids takes new
    /// rows near its end instead of on a random page per block.
    pub fn of_timed(min_time: i64, parts: &[&[u8]]) -> Self {
        let millis = (min_time.max(0) / 1_000_000).to_be_bytes();
        let hash = Self::of(parts).0;
        let mut id = [0u8; 16];
        id[..6].copy_from_slice(&millis[2..]);
        id[6..].copy_from_slice(&hash[..10]);
        BlockId(id)
    }
}

hash_id!(
    /// A process (a native process, or an OTLP resource): derived from its identity.
    ProcessId
);
hash_id!(
    /// A stream of one process: a thread, or one OTLP signal of a resource.
    StreamId
);

/// A Parquet partition: a UUIDv7, like segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(uuid::Uuid);

impl PartitionId {
    /// A new id for a partition created now.
    pub fn new() -> Self {
        PartitionId(uuid::Uuid::now_v7())
    }

    /// The raw bytes, as stored in the catalog.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Reads an id from its 16 stored bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        uuid::Uuid::from_slice(bytes)
            .map(PartitionId)
            .map_err(|e| Error::InvalidInput(format!("partition id: {e}")))
    }
}

impl Default for PartitionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// A segment object: a UUIDv7, so ids sort by creation time and carry the date
/// that places the object in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(uuid::Uuid);

impl SegmentId {
    /// A new id for a segment created now.
    pub fn new() -> Self {
        SegmentId(uuid::Uuid::now_v7())
    }

    /// The raw bytes, as stored in the catalog.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Reads an id from its 16 stored bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let uuid = uuid::Uuid::from_slice(bytes)
            .map_err(|e| Error::InvalidInput(format!("segment id: {e}")))?;
        Self::from_uuid(uuid)
    }

    fn from_uuid(uuid: uuid::Uuid) -> Result<Self> {
        if uuid.get_version_num() != 7 {
            return Err(Error::InvalidInput(format!(
                "segment id {uuid} is not a UUIDv7"
            )));
        }
        Ok(SegmentId(uuid))
    }

    /// When the segment was created, in milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> u64 {
        let (secs, nanos) = self
            .0
            .get_timestamp()
            .expect("a v7 uuid always carries a timestamp")
            .to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    }
}

impl Default for SegmentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for SegmentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let uuid = uuid::Uuid::parse_str(s)
            .map_err(|e| Error::InvalidInput(format!("segment id {s:?}: {e}")))?;
        Self::from_uuid(uuid)
    }
}

/// What a block holds. Stored as a small integer; values never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i16)]
pub enum BlockKind {
    /// OTLP logs: an `ExportLogsServiceRequest` with one resource.
    OtlpLogs = 1,
    /// OTLP spans: an `ExportTraceServiceRequest` with one resource.
    OtlpSpans = 2,
    /// OTLP metrics: an `ExportMetricsServiceRequest` with one resource.
    OtlpMetrics = 3,
    /// A native thread stream's block (CPU spans, frames, instants): a
    /// native block message as sent (`docs/native-format.md`).
    NativeThread = 4,
    /// A native log stream's block.
    NativeLog = 5,
    /// A native metric stream's block.
    NativeMetric = 6,
}

impl BlockKind {
    /// Every kind, in code order.
    pub const ALL: [BlockKind; 6] = [
        BlockKind::OtlpLogs,
        BlockKind::OtlpSpans,
        BlockKind::OtlpMetrics,
        BlockKind::NativeThread,
        BlockKind::NativeLog,
        BlockKind::NativeMetric,
    ];

    /// The stored code.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The kind of a stored code.
    pub fn from_code(code: i16) -> Result<Self> {
        BlockKind::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .ok_or_else(|| Error::InvalidInput(format!("unknown block kind {code}")))
    }

    /// A short name for logs and stream names.
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::OtlpLogs => "otlp.logs",
            BlockKind::OtlpSpans => "otlp.spans",
            BlockKind::OtlpMetrics => "otlp.metrics",
            BlockKind::NativeThread => "native.thread",
            BlockKind::NativeLog => "native.log",
            BlockKind::NativeMetric => "native.metric",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_checked() {
        assert!("acme-prod_1.eu".parse::<TenantId>().is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hash_ids_round_trip_and_separate_parts() {
        let id = BlockId::of(&[b"ab", b"c"]);
        assert_eq!(id.to_string().parse::<BlockId>().expect("parses"), id);
        assert_ne!(id, BlockId::of(&[b"a", b"bc"]), "part boundaries count");
        assert!("xyz".parse::<BlockId>().is_err());
    }

    #[test]
    fn timed_block_ids_sort_by_time_and_keep_the_content() {
        let at = |ms: i64, content: &[u8]| BlockId::of_timed(ms * 1_000_000, &[content]);
        assert_eq!(at(1_700_000_000_000, b"a"), at(1_700_000_000_000, b"a"));
        assert_ne!(at(1_700_000_000_000, b"a"), at(1_700_000_000_000, b"b"));
        assert!(at(1_700_000_000_000, b"z") < at(1_700_000_000_001, b"a"));
        assert_eq!(
            &at(1_700_000_000_000, b"a").as_bytes()[..6],
            &1_700_000_000_000u64.to_be_bytes()[2..]
        );
        assert_eq!(
            &at(-5, b"a").as_bytes()[..6],
            &[0; 6],
            "before 1970 sorts first"
        );
    }

    #[test]
    fn segment_ids_round_trip_and_carry_time() {
        let id = SegmentId::new();
        assert_eq!(id.to_string().parse::<SegmentId>().expect("parses"), id);
        assert_eq!(SegmentId::from_slice(id.as_bytes()).expect("reads"), id);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_millis() as u64;
        assert!(now_ms.abs_diff(id.unix_millis()) < 5_000);
        assert!(
            "00000000-0000-4000-8000-000000000000"
                .parse::<SegmentId>()
                .is_err()
        );
    }
}
