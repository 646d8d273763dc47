//! Object keys. Every key starts with the tenant, so a tenant's data is one prefix.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::ids::{PartitionId, SegmentId, TenantId};
use crate::{Error, Result};

/// Where a segment lives: `tenants/{tenant}/segments/{YYYY-MM-DD}/{HH}/{segment_id}.flseg`.
///
/// The date and hour come from the segment id (a UUIDv7), so the key can be
/// computed from catalog rows without storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPath {
    tenant: TenantId,
    segment: SegmentId,
}

impl SegmentPath {
    /// The path of a tenant's segment.
    pub fn new(tenant: TenantId, segment: SegmentId) -> Self {
        SegmentPath { tenant, segment }
    }

    /// The tenant the segment belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The segment id.
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// The object store path.
    pub fn to_object_path(&self) -> object_store::path::Path {
        object_store::path::Path::from(self.to_string())
    }
}

impl fmt::Display for SegmentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let created = DateTime::<Utc>::from_timestamp_millis(self.segment.unix_millis() as i64)
            .expect("a UUIDv7 timestamp fits chrono's range");
        write!(
            f,
            "tenants/{}/segments/{}/{}.flseg",
            self.tenant,
            created.format("%Y-%m-%d/%H"),
            self.segment
        )
    }
}

impl FromStr for SegmentPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("segment path {s:?}: {why}"));
        let parts: Vec<&str> = s.split('/').collect();
        let [root, tenant, segments, _date, _hour, file] = parts[..] else {
            return Err(bad(
                "expected tenants/{tenant}/segments/{date}/{hour}/{id}.flseg",
            ));
        };
        if root != "tenants" || segments != "segments" {
            return Err(bad("expected tenants/{tenant}/segments/..."));
        }
        let id = file
            .strip_suffix(".flseg")
            .ok_or_else(|| bad("expected a .flseg file"))?;
        let path = SegmentPath::new(tenant.parse()?, id.parse()?);
        if path.to_string() != s {
            return Err(bad("date and hour do not match the segment id"));
        }
        Ok(path)
    }
}

/// Where a log of segments (`seglog.rs`) lives:
/// `tenants/{tenant}/logs/{YYYY-MM-DD}/{HH}/{first_segment_id}.fllog`, named and
/// dated by the first segment it holds (a log holds the segments of one hour).
pub fn log_path(tenant: &TenantId, first: SegmentId) -> object_store::path::Path {
    let created = DateTime::<Utc>::from_timestamp_millis(first.unix_millis() as i64)
        .expect("a UUIDv7 timestamp fits chrono's range");
    object_store::path::Path::from(format!(
        "tenants/{tenant}/logs/{}/{first}.fllog",
        created.format("%Y-%m-%d/%H")
    ))
}

/// Where a Parquet partition lives:
/// `tenants/{tenant}/views/{view}/{YYYY-MM-DD}/{partition_id}.parquet`, dated by
/// the insert time of its first rows.
pub fn partition_path(
    tenant: &TenantId,
    view: &str,
    min_insert_time: i64,
    partition: PartitionId,
) -> object_store::path::Path {
    let day = DateTime::<Utc>::from_timestamp_nanos(min_insert_time).format("%Y-%m-%d");
    object_store::path::Path::from(format!(
        "tenants/{tenant}/views/{view}/{day}/{partition}.parquet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_paths_round_trip() {
        let path = SegmentPath::new("acme".parse().expect("tenant"), SegmentId::new());
        let text = path.to_string();
        assert!(text.starts_with("tenants/acme/segments/"), "{text}");
        assert_eq!(text.parse::<SegmentPath>().expect("parses"), path);
    }

    #[test]
    fn wrong_paths_are_refused() {
        let path = SegmentPath::new("acme".parse().expect("tenant"), SegmentId::new()).to_string();
        assert!(path.replace("acme", "a/b").parse::<SegmentPath>().is_err());
        assert!(
            path.replace(".flseg", ".bin")
                .parse::<SegmentPath>()
                .is_err()
        );
        let wrong_date = format!(
            "tenants/acme/segments/1999-01-01/00/{}.flseg",
            SegmentId::new()
        );
        assert!(wrong_date.parse::<SegmentPath>().is_err());
    }
}
