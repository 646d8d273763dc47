//! Retention: a tenant's data older than its retention (90 days by default)
//! goes, in bulk: one catalog transaction per tenant removes the partitions,
//! blocks and segments inserted before the cutoff, then their objects are
//! deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ids::TenantId;
use crate::{Error, Lake, Result};

const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// How long data is kept.
#[derive(Debug, Clone)]
pub struct Retention {
    pub default_days: u32,
    /// Tenants kept longer or shorter than the default.
    pub per_tenant: HashMap<TenantId, u32>,
    /// Pause between passes.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            default_days: 90,
            per_tenant: HashMap::new(),
            interval: Duration::from_secs(3600),
        }
    }
}

impl Retention {
    /// Reads per-tenant days written `tenant=days,tenant=days`.
    pub fn parse_per_tenant(text: &str) -> Result<HashMap<TenantId, u32>> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|entry| {
                let bad =
                    || Error::InvalidInput(format!("retention {entry:?}: expected tenant=days"));
                let (tenant, days) = entry.split_once('=').ok_or_else(bad)?;
                Ok((
                    tenant.trim().parse()?,
                    days.trim().parse().map_err(|_| bad())?,
                ))
            })
            .collect()
    }

    fn days(&self, tenant: &TenantId) -> u32 {
        self.per_tenant
            .get(tenant)
            .copied()
            .unwrap_or(self.default_days)
    }
}

/// What a pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub partitions: usize,
    pub segments: usize,
    pub blocks: u64,
}

/// Removes, for every tenant, what its retention no longer keeps as of `now`.
pub async fn expire(lake: &Lake, retention: &Retention, now: i64) -> Result<Removed> {
    let mut removed = Removed::default();
    for tenant in lake.catalog.tenants().await? {
        let cutoff = now.saturating_sub(i64::from(retention.days(&tenant)) * DAY_NANOS);
        let expired = lake.catalog.expire(&tenant, cutoff).await?;
        removed.partitions += expired.partitions.len();
        removed.segments += expired.segments.len();
        removed.blocks += expired.blocks;
    }
    // The catalog queued their objects in the same transaction.
    lake.delete_garbage(now).await?;
    Ok(removed)
}

/// Applies retention every interval until `stop`.
pub async fn run(lake: Arc<Lake>, retention: Retention, stop: CancellationToken) {
    loop {
        match expire(&lake, &retention, crate::host::now_nanos()).await {
            Ok(removed) if removed.blocks > 0 || removed.partitions > 0 => {
                tracing::info!(?removed, "expired data removed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retention.interval) => {}
        }
    }
}
