//! The SQL both backends share. The statements are the same text; QueryBuilder
//! writes each backend's placeholders. Only connecting differs per backend.

/// Rows per multi-row INSERT: 16 binds a row stays under both backends' bind limits.
pub(crate) const INSERT_CHUNK: usize = 1000;

/// The writer's inserts, up to their values: both backends' commits use them.
pub(crate) const INSERT_PROCESSES: &str =
    "INSERT INTO processes (tenant, process_id, source, service_name, properties, insert_time)";
pub(crate) const INSERT_STREAMS: &str =
    "INSERT INTO streams (tenant, stream_id, process_id, kind, name, insert_time)";
pub(crate) const INSERT_SEGMENTS: &str = "INSERT INTO segments (tenant, segment_id, size, \
     block_count, insert_time, object, object_offset)";
pub(crate) const INSERT_BLOCKS: &str = "INSERT INTO blocks (tenant, block_id, kind, format, \
     process_id, stream_id, segment_id, byte_offset, byte_length, uncompressed_length, codec, \
     checksum, event_count, min_time, max_time, insert_time)";

/// Implements [`Catalog`](super::Catalog) for `$name { pool: Pool<$db> }`, which
/// commits the writer's rows with its own `commit_rows` and `blocking_commits_of`.
/// `claim_lock` ends the SELECT that claims blocks (row locks, if the backend
/// has them); `snapshot` is the statement, if any, that gives a transaction
/// one snapshot for all its reads.
macro_rules! impl_sql_catalog {
    ($name:ident, $db:ty, claim_lock: $claim_lock:expr, snapshot: $snapshot:expr) => {
        #[async_trait::async_trait]
        impl $crate::catalog::Catalog for $name {
            async fn commit(&self, commits: &[$crate::catalog::TenantCommit]) -> $crate::Result<u64> {
                self.commit_rows(commits).await
            }

            fn blocking_commits(
                &self,
            ) -> Option<std::sync::Arc<dyn $crate::catalog::BlockingCommits>> {
                self.blocking_commits_of()
            }

            async fn blocks(
                &self,
                tenant: &$crate::ids::TenantId,
                filter: &$crate::catalog::BlockFilter,
            ) -> $crate::Result<Vec<$crate::catalog::BlockRecord>> {
                let mut q = blocks_query(tenant, &filter.kinds, &filter.processes, filter.time_range, false);
                q.push(" ORDER BY insert_time, segment_id, byte_offset");
                block_rows(q.build().fetch_all(&self.pool).await?)
            }

            async fn tenants(&self) -> $crate::Result<Vec<$crate::ids::TenantId>> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT DISTINCT tenant FROM segments ORDER BY tenant")
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|r| r.try_get::<String, _>(0)?.parse())
                    .collect()
            }

            async fn expire(
                &self,
                tenant: &$crate::ids::TenantId,
                cutoff: i64,
            ) -> $crate::Result<$crate::catalog::Expired> {
                use sqlx::Row;
                let mut tx = self.pool.begin().await?;
                let mut q = partitions_query(tenant, None, None, Some(cutoff));
                q.push(PARTITION_ORDER);
                let partitions = partition_rows(q.build().fetch_all(&mut *tx).await?)?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM reductions WHERE tenant = ");
                q.push_bind(tenant.as_str())
                    .push(" AND partition_id IN (SELECT partition_id FROM partitions WHERE tenant = ")
                    .push_bind(tenant.as_str())
                    .push(" AND max_insert_time < ")
                    .push_bind(cutoff)
                    .push(")");
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM partitions WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND max_insert_time < ").push_bind(cutoff);
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM blocks WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND insert_time < ").push_bind(cutoff);
                let blocks = q.build().execute(&mut *tx).await?.rows_affected();
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT segment_id, object FROM segments WHERE tenant = ",
                );
                q.push_bind(tenant.as_str()).push(" AND insert_time < ").push_bind(cutoff);
                let rows = q.build().fetch_all(&mut *tx).await?;
                let mut segments = Vec::with_capacity(rows.len());
                let mut own_objects = Vec::new();
                let mut logs = std::collections::BTreeSet::new();
                for r in rows {
                    let id = $crate::ids::SegmentId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?;
                    segments.push(id);
                    match r.try_get::<Option<String>, _>(1)? {
                        Some(log) => {
                            logs.insert(log);
                        }
                        None => own_objects.push(
                            $crate::paths::SegmentPath::new(tenant.clone(), id).to_object_path().to_string(),
                        ),
                    }
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM segments WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND insert_time < ").push_bind(cutoff);
                q.build().execute(&mut *tx).await?;
                // A log goes once none of its segments is left (a log holds one
                // hour, so in practice with the last of them).
                let mut empty_logs = Vec::new();
                for log in logs {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT 1 FROM segments WHERE tenant = ");
                    q.push_bind(tenant.as_str()).push(" AND object = ").push_bind(log.as_str()).push(" LIMIT 1");
                    if q.build().fetch_optional(&mut *tx).await?.is_none() {
                        empty_logs.push(log);
                    }
                }
                // Their objects, queued for deletion now: a process that stops
                // before deleting them leaves the queue to the next pass.
                let paths: Vec<String> = partitions
                    .iter()
                    .map(|p| p.path(tenant).to_string())
                    .chain(own_objects)
                    .chain(empty_logs)
                    .collect();
                for chunk in paths.chunks($crate::catalog::sql::INSERT_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO garbage (tenant, path, delete_after) ");
                    q.push_values(chunk, |mut b, path| {
                        b.push_bind(tenant.as_str()).push_bind(path.as_str()).push_bind(i64::MIN);
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok($crate::catalog::Expired { partitions, segments, blocks })
            }

            async fn pending_tenants(&self) -> $crate::Result<Vec<$crate::ids::TenantId>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT DISTINCT tenant FROM blocks WHERE partition_id IS NULL \
                     AND quarantine_error IS NULL ORDER BY tenant",
                )
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|r| r.try_get::<String, _>(0)?.parse())
                    .collect()
            }

            async fn quarantine(
                &self,
                tenant: &$crate::ids::TenantId,
                block: $crate::ids::BlockId,
                reason: &str,
            ) -> $crate::Result<()> {
                let mut conn = self.pool.acquire().await?;
                quarantine_block(&mut conn, tenant, block, reason).await
            }

            async fn claim_pending(
                &self,
                tenant: &$crate::ids::TenantId,
                filter: &$crate::catalog::BlockFilter,
                limit: usize,
            ) -> $crate::Result<Box<dyn $crate::catalog::Claim>> {
                let mut q = blocks_query(tenant, &filter.kinds, &filter.processes, filter.time_range, true);
                q.push(" AND quarantine_error IS NULL ORDER BY insert_time, segment_id, byte_offset LIMIT ")
                    .push_bind(limit as i64)
                    .push($claim_lock);
                // With row locks, the claim holds its transaction until it commits;
                // without, it checks at commit that no block was taken meanwhile.
                let (tx, rows) = if $claim_lock.is_empty() {
                    (None, q.build().fetch_all(&self.pool).await?)
                } else {
                    let mut tx = self.pool.begin().await?;
                    let rows = q.build().fetch_all(&mut *tx).await?;
                    (Some(tx), rows)
                };
                Ok(Box::new(SqlClaim {
                    pool: self.pool.clone(),
                    tx,
                    tenant: tenant.clone(),
                    blocks: block_rows(rows)?,
                }))
            }

            async fn snapshot(
                &self,
                tenant: &$crate::ids::TenantId,
                request: &$crate::catalog::SnapshotRequest<'_>,
            ) -> $crate::Result<$crate::catalog::ViewSnapshot> {
                let mut tx = self.pool.begin().await?;
                if let Some(statement) = $snapshot {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                let mut q = partitions_query(tenant, Some(request.view), request.time_range, None);
                if let Some((target, _)) = request.aggregate {
                    q.push(" AND NOT EXISTS (SELECT 1 FROM reductions r WHERE r.tenant = partitions.tenant \
                            AND r.partition_id = partitions.partition_id AND r.target = ")
                        .push_bind(target)
                        .push(")");
                }
                q.push(PARTITION_ORDER);
                let partitions = partition_rows(q.build().fetch_all(&mut *tx).await?)?;
                let mut q = blocks_query(tenant, request.kinds, request.processes, request.time_range, true);
                q.push(" ORDER BY insert_time, segment_id, byte_offset");
                let (quarantined, blocks) = block_rows(q.build().fetch_all(&mut *tx).await?)?
                    .into_iter()
                    .partition(|b| b.quarantine.is_some());
                let reduced = match request.aggregate {
                    Some((target, time_range)) => {
                        let mut q = partitions_query(tenant, Some(target), time_range, None);
                        q.push(PARTITION_ORDER);
                        partition_rows(q.build().fetch_all(&mut *tx).await?)?
                    }
                    None => Vec::new(),
                };
                tx.commit().await?;
                Ok($crate::catalog::ViewSnapshot { partitions, blocks, reduced, quarantined })
            }

            async fn partition_tenants(&self, view: &str) -> $crate::Result<Vec<$crate::ids::TenantId>> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT DISTINCT tenant FROM partitions WHERE view_name = ",
                );
                q.push_bind(view).push(" ORDER BY tenant");
                q.build()
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|r| r.try_get::<String, _>(0)?.parse())
                    .collect()
            }

            async fn claim_partitions(
                &self,
                tenant: &$crate::ids::TenantId,
                filter: &$crate::catalog::PartitionFilter,
            ) -> $crate::Result<Box<dyn $crate::catalog::PartitionClaim>> {
                let mut q = partitions_query(tenant, Some(&filter.view), None, None);
                q.push(" AND level >= ").push_bind(filter.min_level);
                q.push(" AND level <= ").push_bind(filter.max_level);
                if let Some(before) = filter.inserted_before {
                    q.push(" AND min_insert_time < ").push_bind(before);
                }
                if let Some(target) = &filter.not_reduced_into {
                    q.push(" AND NOT EXISTS (SELECT 1 FROM reductions r WHERE r.tenant = partitions.tenant \
                            AND r.partition_id = partitions.partition_id AND r.target = ")
                        .push_bind(target.as_str())
                        .push(")");
                }
                if !filter.reduced_into.is_empty() {
                    q.push(" AND (SELECT count(*) FROM reductions r WHERE r.tenant = partitions.tenant \
                            AND r.partition_id = partitions.partition_id AND r.target IN (");
                    let mut list = q.separated(", ");
                    for target in &filter.reduced_into {
                        list.push_bind(target.as_str());
                    }
                    q.push(")) = ").push_bind(filter.reduced_into.len() as i64);
                }
                q.push(PARTITION_ORDER).push(" LIMIT ").push_bind(filter.limit as i64).push($claim_lock);
                let (tx, rows) = if $claim_lock.is_empty() {
                    (None, q.build().fetch_all(&self.pool).await?)
                } else {
                    let mut tx = self.pool.begin().await?;
                    let rows = q.build().fetch_all(&mut *tx).await?;
                    (Some(tx), rows)
                };
                Ok(Box::new(SqlPartitionClaim {
                    pool: self.pool.clone(),
                    tx,
                    tenant: tenant.clone(),
                    partitions: partition_rows(rows)?,
                }))
            }

            async fn garbage(
                &self,
                now: i64,
                limit: usize,
            ) -> $crate::Result<Vec<$crate::catalog::Garbage>> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT tenant, path FROM garbage WHERE delete_after <= ",
                );
                q.push_bind(now).push(" ORDER BY delete_after LIMIT ").push_bind(limit as i64);
                q.build()
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|r| {
                        Ok($crate::catalog::Garbage {
                            tenant: r.try_get::<String, _>(0)?.parse()?,
                            path: r.try_get(1)?,
                        })
                    })
                    .collect()
            }

            async fn forget_garbage(&self, deleted: &[$crate::catalog::Garbage]) -> $crate::Result<()> {
                use $crate::catalog::sql::INSERT_CHUNK;
                let mut tx = self.pool.begin().await?;
                for chunk in deleted.chunks(INSERT_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM garbage WHERE (tenant, path) IN (");
                    let mut list = q.separated(", ");
                    for g in chunk {
                        list.push("(")
                            .push_bind_unseparated(g.tenant.as_str())
                            .push_unseparated(", ")
                            .push_bind_unseparated(g.path.as_str())
                            .push_unseparated(")");
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn partitions(
                &self,
                tenant: &$crate::ids::TenantId,
                view: Option<&str>,
            ) -> $crate::Result<Vec<$crate::catalog::PartitionRecord>> {
                let mut q = partitions_query(tenant, view, None, None);
                q.push(PARTITION_ORDER);
                partition_rows(q.build().fetch_all(&self.pool).await?)
            }

            async fn processes(
                &self,
                tenant: &$crate::ids::TenantId,
            ) -> $crate::Result<Vec<$crate::catalog::ProcessRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    SELECT_PROCESSES,
                );
                q.push_bind(tenant.as_str()).push(" ORDER BY insert_time, process_id");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(process_of_row).collect()
            }

            async fn process(
                &self,
                tenant: &$crate::ids::TenantId,
                id: &$crate::ids::ProcessId,
            ) -> $crate::Result<Option<$crate::catalog::ProcessRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    SELECT_PROCESSES,
                );
                q.push_bind(tenant.as_str())
                    .push(" AND process_id = ")
                    .push_bind(id.as_bytes().to_vec());
                let row = q.build().fetch_optional(&self.pool).await?;
                row.as_ref().map(process_of_row).transpose()
            }

            async fn streams(
                &self,
                tenant: &$crate::ids::TenantId,
            ) -> $crate::Result<Vec<$crate::catalog::StreamRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    SELECT_STREAMS,
                );
                q.push_bind(tenant.as_str()).push(" ORDER BY insert_time, stream_id");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter().map(stream_of_row).collect()
            }

            async fn stream(
                &self,
                tenant: &$crate::ids::TenantId,
                id: &$crate::ids::StreamId,
            ) -> $crate::Result<Option<$crate::catalog::StreamRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    SELECT_STREAMS,
                );
                q.push_bind(tenant.as_str())
                    .push(" AND stream_id = ")
                    .push_bind(id.as_bytes().to_vec());
                let row = q.build().fetch_optional(&self.pool).await?;
                row.as_ref().map(stream_of_row).transpose()
            }

            async fn segments(
                &self,
                tenant: &$crate::ids::TenantId,
            ) -> $crate::Result<Vec<$crate::catalog::SegmentRecord>> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT segment_id, size, block_count, insert_time, object, object_offset FROM segments \
                     WHERE tenant = ",
                );
                q.push_bind(tenant.as_str()).push(" ORDER BY insert_time, segment_id");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::catalog::SegmentRecord {
                            segment_id: $crate::ids::SegmentId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?,
                            size: r.try_get::<i64, _>(1)? as u64,
                            block_count: r.try_get::<i32, _>(2)? as u32,
                            insert_time: r.try_get(3)?,
                            log: match r.try_get::<Option<String>, _>(4)? {
                                Some(object) => Some($crate::catalog::LogLocation {
                                    object,
                                    offset: r.try_get::<i64, _>(5)? as u64,
                                }),
                                None => None,
                            },
                        })
                    })
                    .collect()
            }

            async fn known_segments(
                &self,
                tenant: &$crate::ids::TenantId,
                segments: &[$crate::ids::SegmentId],
            ) -> $crate::Result<std::collections::HashSet<$crate::ids::SegmentId>> {
                use sqlx::Row;
                use $crate::catalog::sql::INSERT_CHUNK;
                let mut known = std::collections::HashSet::new();
                for chunk in segments.chunks(INSERT_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT segment_id FROM segments WHERE tenant = ",
                    );
                    q.push_bind(tenant.as_str()).push(" AND segment_id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.as_bytes().as_slice());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(&self.pool).await? {
                        known.insert($crate::ids::SegmentId::from_slice(&row.try_get::<Vec<u8>, _>(0)?)?);
                    }
                }
                Ok(known)
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        /// Blocks of a tenant: of these kinds (all when empty), overlapping a
        /// time range, only those not yet in a partition.
        fn blocks_query(
            tenant: &$crate::ids::TenantId,
            kinds: &[$crate::ids::BlockKind],
            processes: &[$crate::ids::ProcessId],
            time_range: Option<(i64, i64)>,
            pending: bool,
        ) -> sqlx::QueryBuilder<$db> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT block_id, kind, format, process_id, stream_id, segment_id, byte_offset, byte_length, \
                 uncompressed_length, codec, checksum, event_count, min_time, max_time, insert_time, \
                 (SELECT s.object FROM segments s WHERE s.tenant = blocks.tenant \
                  AND s.segment_id = blocks.segment_id), \
                 (SELECT s.object_offset FROM segments s WHERE s.tenant = blocks.tenant \
                  AND s.segment_id = blocks.segment_id), quarantine_error \
                 FROM blocks WHERE tenant = ",
            );
            q.push_bind(tenant.as_str());
            if !kinds.is_empty() {
                q.push(" AND kind IN (");
                let mut list = q.separated(", ");
                for kind in kinds {
                    list.push_bind(kind.code());
                }
                q.push(")");
            }
            if !processes.is_empty() {
                q.push(" AND process_id IN (");
                let mut list = q.separated(", ");
                for process in processes {
                    list.push_bind(process.as_bytes().to_vec());
                }
                q.push(")");
            }
            if let Some((min, max)) = time_range {
                q.push(" AND max_time >= ").push_bind(min);
                q.push(" AND min_time <= ").push_bind(max);
            }
            if pending {
                q.push(" AND partition_id IS NULL");
            }
            q
        }

        fn block_rows(
            rows: Vec<<$db as sqlx::Database>::Row>,
        ) -> $crate::Result<Vec<$crate::catalog::BlockRecord>> {
            use sqlx::Row;
            rows.into_iter()
                .map(|r| {
                    $crate::catalog::BlockRecord::try_from($crate::catalog::RawBlock {
                        block_id: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        format: r.try_get(2)?,
                        process_id: r.try_get(3)?,
                        stream_id: r.try_get(4)?,
                        segment_id: r.try_get(5)?,
                        byte_offset: r.try_get(6)?,
                        byte_length: r.try_get(7)?,
                        uncompressed_length: r.try_get(8)?,
                        codec: r.try_get(9)?,
                        checksum: r.try_get(10)?,
                        event_count: r.try_get(11)?,
                        min_time: r.try_get(12)?,
                        max_time: r.try_get(13)?,
                        insert_time: r.try_get(14)?,
                        segment_object: r.try_get(15)?,
                        segment_offset: r.try_get(16)?,
                        quarantine_error: r.try_get(17)?,
                    })
                })
                .collect()
        }

        /// Partitions of a tenant: of one view (all when `None`), overlapping a
        /// time range, all of whose rows were inserted before a time.
        fn partitions_query(
            tenant: &$crate::ids::TenantId,
            view: Option<&str>,
            time_range: Option<(i64, i64)>,
            inserted_before: Option<i64>,
        ) -> sqlx::QueryBuilder<$db> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT partition_id, view_name, level, min_time, max_time, min_insert_time, max_insert_time, \
                 row_count, size, insert_time FROM partitions WHERE tenant = ",
            );
            q.push_bind(tenant.as_str());
            if let Some(view) = view {
                q.push(" AND view_name = ").push_bind(view);
            }
            if let Some((min, max)) = time_range {
                q.push(" AND max_time >= ").push_bind(min);
                q.push(" AND min_time <= ").push_bind(max);
            }
            if let Some(cutoff) = inserted_before {
                q.push(" AND max_insert_time < ").push_bind(cutoff);
            }
            q
        }

        /// The order partitions are listed and claimed in: oldest insert first.
        const PARTITION_ORDER: &str = " ORDER BY min_insert_time, partition_id";

        fn partition_rows(
            rows: Vec<<$db as sqlx::Database>::Row>,
        ) -> $crate::Result<Vec<$crate::catalog::PartitionRecord>> {
            use sqlx::Row;
            rows.into_iter()
                .map(|r| {
                    Ok($crate::catalog::PartitionRecord {
                        partition_id: $crate::ids::PartitionId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?,
                        view: r.try_get(1)?,
                        level: r.try_get(2)?,
                        min_time: r.try_get(3)?,
                        max_time: r.try_get(4)?,
                        min_insert_time: r.try_get(5)?,
                        max_insert_time: r.try_get(6)?,
                        row_count: r.try_get::<i64, _>(7)? as u64,
                        size: r.try_get::<i64, _>(8)? as u64,
                        insert_time: r.try_get(9)?,
                    })
                })
                .collect()
        }

        /// Blocks claimed for materialization.
        struct SqlClaim {
            pool: sqlx::Pool<$db>,
            /// The transaction holding the blocks' row locks, if the backend locks rows.
            tx: Option<sqlx::Transaction<'static, $db>>,
            tenant: $crate::ids::TenantId,
            blocks: Vec<$crate::catalog::BlockRecord>,
        }

        /// The columns `process_of_row` reads, of a tenant's processes.
        const SELECT_PROCESSES: &str =
            "SELECT process_id, source, service_name, properties, insert_time FROM processes WHERE tenant = ";
        /// The columns `stream_of_row` reads, of a tenant's streams.
        const SELECT_STREAMS: &str =
            "SELECT stream_id, process_id, kind, name, insert_time FROM streams WHERE tenant = ";

        fn process_of_row(
            r: &<$db as sqlx::Database>::Row,
        ) -> $crate::Result<$crate::catalog::ProcessRecord> {
            use sqlx::Row;
            Ok($crate::catalog::ProcessRecord {
                process_id: $crate::ids::ProcessId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?,
                source: $crate::catalog::Source::from_code(r.try_get(1)?)?,
                service_name: r.try_get(2)?,
                properties: r.try_get::<Vec<u8>, _>(3)?.into(),
                insert_time: r.try_get(4)?,
            })
        }

        fn stream_of_row(
            r: &<$db as sqlx::Database>::Row,
        ) -> $crate::Result<$crate::catalog::StreamRecord> {
            use sqlx::Row;
            Ok($crate::catalog::StreamRecord {
                stream_id: $crate::ids::StreamId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?,
                process_id: $crate::ids::ProcessId::from_slice(&r.try_get::<Vec<u8>, _>(1)?)?,
                kind: $crate::ids::BlockKind::from_code(r.try_get(2)?)?,
                name: r.try_get(3)?,
                insert_time: r.try_get(4)?,
            })
        }

        impl std::fmt::Debug for SqlClaim {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SqlClaim")
                    .field("tenant", &self.tenant)
                    .field("blocks", &self.blocks.len())
                    .field("locked", &self.tx.is_some())
                    .finish()
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::Claim for SqlClaim {
            fn blocks(&self) -> &[$crate::catalog::BlockRecord] {
                &self.blocks
            }

            fn truncate(&mut self, n: usize) {
                self.blocks.truncate(n);
            }

            async fn commit(
                self: Box<Self>,
                partition: &$crate::catalog::PartitionRecord,
            ) -> $crate::Result<bool> {
                use $crate::catalog::sql::INSERT_CHUNK;
                let mut tx = match self.tx {
                    Some(tx) => tx,
                    None => self.pool.begin().await?,
                };
                let tenant = self.tenant.as_str();
                insert_partitions(tenant, [partition]).build().execute(&mut *tx).await?;
                let mut updated = 0;
                for chunk in self.blocks.chunks(INSERT_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE blocks SET partition_id = ");
                    q.push_bind(partition.partition_id.as_bytes().as_slice())
                        .push(" WHERE tenant = ")
                        .push_bind(tenant)
                        .push(" AND partition_id IS NULL AND block_id IN (");
                    let mut list = q.separated(", ");
                    for block in chunk {
                        list.push_bind(block.block_id.as_bytes().as_slice());
                    }
                    q.push(")");
                    updated += q.build().execute(&mut *tx).await?.rows_affected();
                }
                if updated != self.blocks.len() as u64 {
                    // Another maintainer materialized some of them first.
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn quarantine(
                self: Box<Self>,
                block: $crate::ids::BlockId,
                reason: &str,
            ) -> $crate::Result<()> {
                // In the claim's transaction: its row locks end with it.
                let mut tx = match self.tx {
                    Some(tx) => tx,
                    None => self.pool.begin().await?,
                };
                quarantine_block(&mut tx, &self.tenant, block, reason).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        /// Marks a pending block quarantined, with the reason.
        async fn quarantine_block(
            conn: &mut <$db as sqlx::Database>::Connection,
            tenant: &$crate::ids::TenantId,
            block: $crate::ids::BlockId,
            reason: &str,
        ) -> $crate::Result<()> {
            let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE blocks SET quarantine_error = ");
            q.push_bind(reason)
                .push(" WHERE tenant = ")
                .push_bind(tenant.as_str())
                .push(" AND block_id = ")
                .push_bind(block.as_bytes().as_slice())
                .push(" AND partition_id IS NULL");
            q.build().execute(&mut *conn).await?;
            Ok(())
        }

        fn insert_partitions<'a>(
            tenant: &'a str,
            partitions: impl IntoIterator<Item = &'a $crate::catalog::PartitionRecord>,
        ) -> sqlx::QueryBuilder<$db> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO partitions (tenant, partition_id, view_name, level, min_time, max_time, \
                 min_insert_time, max_insert_time, row_count, size, insert_time) ",
            );
            q.push_values(partitions, |mut b, p| {
                b.push_bind(tenant)
                    .push_bind(p.partition_id.as_bytes().as_slice())
                    .push_bind(p.view.as_str())
                    .push_bind(p.level)
                    .push_bind(p.min_time)
                    .push_bind(p.max_time)
                    .push_bind(p.min_insert_time)
                    .push_bind(p.max_insert_time)
                    .push_bind(p.row_count as i64)
                    .push_bind(p.size as i64)
                    .push_bind(p.insert_time);
            });
            q
        }

        /// `column IN (…ids)`.
        fn push_ids(
            q: &mut sqlx::QueryBuilder<$db>,
            column: &str,
            ids: &[$crate::ids::PartitionId],
        ) {
            q.push(" ").push(column).push(" IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(id.as_bytes().as_slice());
            }
            q.push(")");
        }

        /// Partitions claimed for compaction or reduction.
        struct SqlPartitionClaim {
            pool: sqlx::Pool<$db>,
            /// The transaction holding the partitions' row locks, if the backend locks rows.
            tx: Option<sqlx::Transaction<'static, $db>>,
            tenant: $crate::ids::TenantId,
            partitions: Vec<$crate::catalog::PartitionRecord>,
        }

        impl std::fmt::Debug for SqlPartitionClaim {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SqlPartitionClaim")
                    .field("tenant", &self.tenant)
                    .field("partitions", &self.partitions.len())
                    .field("locked", &self.tx.is_some())
                    .finish()
            }
        }

        #[async_trait::async_trait]
        impl $crate::catalog::PartitionClaim for SqlPartitionClaim {
            fn partitions(&self) -> &[$crate::catalog::PartitionRecord] {
                &self.partitions
            }

            async fn commit(
                self: Box<Self>,
                change: &$crate::catalog::PartitionChange,
            ) -> $crate::Result<bool> {
                use sqlx::Row;
                let mut tx = match self.tx {
                    Some(tx) => tx,
                    None => self.pool.begin().await?,
                };
                let tenant = self.tenant.as_str();
                // Writes come before the checks: once a write holds SQLite's
                // lock, what the checks read is current.
                for r in &change.replacements {
                    let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM partitions WHERE tenant = ");
                    q.push_bind(tenant).push(" AND");
                    push_ids(&mut q, "partition_id", &r.inputs);
                    if q.build().execute(&mut *tx).await?.rows_affected() != r.inputs.len() as u64 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    insert_partitions(tenant, [&r.output]).build().execute(&mut *tx).await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE blocks SET partition_id = ");
                    q.push_bind(r.output.partition_id.as_bytes().as_slice())
                        .push(" WHERE tenant = ")
                        .push_bind(tenant)
                        .push(" AND");
                    push_ids(&mut q, "partition_id", &r.inputs);
                    q.build().execute(&mut *tx).await?;
                    // Aggregates that reduced every input have reduced the output.
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO reductions (tenant, target, partition_id) SELECT tenant, target, ",
                    );
                    q.push_bind(r.output.partition_id.as_bytes().as_slice())
                        .push(" FROM reductions WHERE tenant = ")
                        .push_bind(tenant)
                        .push(" AND");
                    push_ids(&mut q, "partition_id", &r.inputs);
                    q.push(" GROUP BY tenant, target HAVING count(*) = ")
                        .push_bind(r.inputs.len() as i64);
                    q.build().execute(&mut *tx).await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM reductions WHERE tenant = ");
                    q.push_bind(tenant).push(" AND");
                    push_ids(&mut q, "partition_id", &r.inputs);
                    q.build().execute(&mut *tx).await?;
                    let garbage: Vec<String> = self
                        .partitions
                        .iter()
                        .filter(|p| r.inputs.contains(&p.partition_id))
                        .map(|p| p.path(&self.tenant).to_string())
                        .collect();
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO garbage (tenant, path, delete_after) ");
                    q.push_values(&garbage, |mut b, path| {
                        b.push_bind(tenant).push_bind(path.as_str()).push_bind(change.delete_after);
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                for (id, level) in &change.relevels {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE partitions SET level = ");
                    q.push_bind(*level)
                        .push(" WHERE tenant = ")
                        .push_bind(tenant)
                        .push(" AND partition_id = ")
                        .push_bind(id.as_bytes().as_slice());
                    if q.build().execute(&mut *tx).await?.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                for r in &change.reductions {
                    insert_partitions(tenant, [&r.output]).build().execute(&mut *tx).await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO reductions (tenant, target, partition_id) ");
                    q.push_values(&r.sources, |mut b, id| {
                        b.push_bind(tenant).push_bind(r.output.view.as_str()).push_bind(id.as_bytes().as_slice());
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    let recorded = q.build().execute(&mut *tx).await?.rows_affected();
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT count(*) FROM partitions WHERE tenant = ");
                    q.push_bind(tenant).push(" AND");
                    push_ids(&mut q, "partition_id", &r.sources);
                    let present: i64 = q.build().fetch_one(&mut *tx).await?.try_get(0)?;
                    // Another maintainer reduced or replaced one of them first.
                    if recorded != r.sources.len() as u64 || present != r.sources.len() as i64 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_sql_catalog;
