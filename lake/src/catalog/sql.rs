//! The SQL both backends share. The statements are the same text; QueryBuilder
//! writes each backend's placeholders. Only connecting differs per backend.

/// Rows per multi-row INSERT: 16 binds a row stays under both backends' bind limits.
pub(crate) const INSERT_CHUNK: usize = 1000;

/// Implements [`Catalog`](super::Catalog) for `$name { pool: Pool<$db> }`.
/// `claim_lock` ends the SELECT that claims blocks (row locks, if the backend
/// has them); `snapshot` is the statement, if any, that gives a transaction
/// one snapshot for all its reads.
macro_rules! impl_sql_catalog {
    ($name:ident, $db:ty, claim_lock: $claim_lock:expr, snapshot: $snapshot:expr) => {
        #[async_trait::async_trait]
        impl $crate::catalog::Catalog for $name {
            async fn commit(&self, commits: &[$crate::catalog::TenantCommit]) -> $crate::Result<u64> {
                use sqlx::QueryBuilder;
                use $crate::catalog::sql::INSERT_CHUNK;
                let mut tx = self.pool.begin().await?;
                let mut new_blocks = 0;
                for c in commits {
                    let tenant = c.tenant.as_str();
                    for chunk in c.processes.chunks(INSERT_CHUNK) {
                        let mut q = QueryBuilder::<$db>::new(
                            "INSERT INTO processes (tenant, process_id, source, service_name, properties, insert_time) ",
                        );
                        q.push_values(chunk, |mut b, p| {
                            b.push_bind(tenant)
                                .push_bind(p.process_id.as_bytes().as_slice())
                                .push_bind(p.source as i16)
                                .push_bind(p.service_name.as_str())
                                .push_bind(p.properties.as_ref())
                                .push_bind(p.insert_time);
                        });
                        q.push(" ON CONFLICT DO NOTHING");
                        q.build().execute(&mut *tx).await?;
                    }
                    for chunk in c.streams.chunks(INSERT_CHUNK) {
                        let mut q = QueryBuilder::<$db>::new(
                            "INSERT INTO streams (tenant, stream_id, process_id, kind, name, insert_time) ",
                        );
                        q.push_values(chunk, |mut b, s| {
                            b.push_bind(tenant)
                                .push_bind(s.stream_id.as_bytes().as_slice())
                                .push_bind(s.process_id.as_bytes().as_slice())
                                .push_bind(s.kind.code())
                                .push_bind(s.name.as_str())
                                .push_bind(s.insert_time);
                        });
                        q.push(" ON CONFLICT DO NOTHING");
                        q.build().execute(&mut *tx).await?;
                    }
                    let s = &c.segment;
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO segments (tenant, segment_id, size, block_count, insert_time) ",
                    );
                    q.push_values([s], |mut b, s| {
                        b.push_bind(tenant)
                            .push_bind(s.segment_id.as_bytes().as_slice())
                            .push_bind(s.size as i64)
                            .push_bind(s.block_count as i32)
                            .push_bind(s.insert_time);
                    });
                    q.build().execute(&mut *tx).await?;
                    for chunk in c.blocks.chunks(INSERT_CHUNK) {
                        let mut q = QueryBuilder::<$db>::new(
                            "INSERT INTO blocks (tenant, block_id, kind, format, process_id, stream_id, segment_id, \
                             byte_offset, byte_length, uncompressed_length, codec, checksum, event_count, \
                             min_time, max_time, insert_time) ",
                        );
                        q.push_values(chunk, |mut b, r| {
                            b.push_bind(tenant)
                                .push_bind(r.block_id.as_bytes().as_slice())
                                .push_bind(r.kind.code())
                                .push_bind(r.format)
                                .push_bind(r.process_id.as_bytes().as_slice())
                                .push_bind(r.stream_id.as_bytes().as_slice())
                                .push_bind(r.segment_id.as_bytes().as_slice())
                                .push_bind(r.offset as i64)
                                .push_bind(i64::from(r.length))
                                .push_bind(i64::from(r.uncompressed_length))
                                .push_bind(i16::from(r.codec.code()))
                                .push_bind(r.checksum as i64)
                                .push_bind(i64::from(r.event_count))
                                .push_bind(r.min_time)
                                .push_bind(r.max_time)
                                .push_bind(r.insert_time);
                        });
                        q.push(" ON CONFLICT DO NOTHING");
                        new_blocks += q.build().execute(&mut *tx).await?.rows_affected();
                    }
                }
                tx.commit().await?;
                Ok(new_blocks)
            }

            async fn blocks(
                &self,
                tenant: &$crate::ids::TenantId,
                filter: &$crate::catalog::BlockFilter,
            ) -> $crate::Result<Vec<$crate::catalog::BlockRecord>> {
                let mut q = blocks_query(tenant, &filter.kinds, filter.time_range, false);
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
                let partitions = partition_rows(q.build().fetch_all(&mut *tx).await?)?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM partitions WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND max_insert_time < ").push_bind(cutoff);
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM blocks WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND insert_time < ").push_bind(cutoff);
                let blocks = q.build().execute(&mut *tx).await?.rows_affected();
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT segment_id FROM segments WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND insert_time < ").push_bind(cutoff);
                let segments = q
                    .build()
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|r| $crate::ids::SegmentId::from_slice(&r.try_get::<Vec<u8>, _>(0)?))
                    .collect::<$crate::Result<Vec<_>>>()?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM segments WHERE tenant = ");
                q.push_bind(tenant.as_str()).push(" AND insert_time < ").push_bind(cutoff);
                q.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok($crate::catalog::Expired { partitions, segments, blocks })
            }

            async fn pending_tenants(&self) -> $crate::Result<Vec<$crate::ids::TenantId>> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT DISTINCT tenant FROM blocks WHERE partition_id IS NULL ORDER BY tenant")
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|r| r.try_get::<String, _>(0)?.parse())
                    .collect()
            }

            async fn claim_pending(
                &self,
                tenant: &$crate::ids::TenantId,
                kinds: &[$crate::ids::BlockKind],
                limit: usize,
            ) -> $crate::Result<Box<dyn $crate::catalog::Claim>> {
                let mut q = blocks_query(tenant, kinds, None, true);
                q.push(" ORDER BY insert_time, segment_id, byte_offset LIMIT ")
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
                view: &str,
                kinds: &[$crate::ids::BlockKind],
                time_range: Option<(i64, i64)>,
            ) -> $crate::Result<$crate::catalog::ViewSnapshot> {
                let mut tx = self.pool.begin().await?;
                if let Some(statement) = $snapshot {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                let mut q = partitions_query(tenant, Some(view), time_range, None);
                let partitions = partition_rows(q.build().fetch_all(&mut *tx).await?)?;
                let mut q = blocks_query(tenant, kinds, time_range, true);
                q.push(" ORDER BY insert_time, segment_id, byte_offset");
                let blocks = block_rows(q.build().fetch_all(&mut *tx).await?)?;
                tx.commit().await?;
                Ok($crate::catalog::ViewSnapshot { partitions, blocks })
            }

            async fn partitions(
                &self,
                tenant: &$crate::ids::TenantId,
                view: Option<&str>,
            ) -> $crate::Result<Vec<$crate::catalog::PartitionRecord>> {
                let mut q = partitions_query(tenant, view, None, None);
                partition_rows(q.build().fetch_all(&self.pool).await?)
            }

            async fn processes(
                &self,
                tenant: &$crate::ids::TenantId,
            ) -> $crate::Result<Vec<$crate::catalog::ProcessRecord>> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT process_id, source, service_name, properties, insert_time FROM processes WHERE tenant = ",
                );
                q.push_bind(tenant.as_str()).push(" ORDER BY insert_time, process_id");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::catalog::ProcessRecord {
                            process_id: $crate::ids::ProcessId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?,
                            source: $crate::catalog::Source::from_code(r.try_get(1)?)?,
                            service_name: r.try_get(2)?,
                            properties: r.try_get::<Vec<u8>, _>(3)?.into(),
                            insert_time: r.try_get(4)?,
                        })
                    })
                    .collect()
            }

            async fn streams(
                &self,
                tenant: &$crate::ids::TenantId,
            ) -> $crate::Result<Vec<$crate::catalog::StreamRecord>> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT stream_id, process_id, kind, name, insert_time FROM streams WHERE tenant = ",
                );
                q.push_bind(tenant.as_str()).push(" ORDER BY insert_time, stream_id");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::catalog::StreamRecord {
                            stream_id: $crate::ids::StreamId::from_slice(&r.try_get::<Vec<u8>, _>(0)?)?,
                            process_id: $crate::ids::ProcessId::from_slice(&r.try_get::<Vec<u8>, _>(1)?)?,
                            kind: $crate::ids::BlockKind::from_code(r.try_get(2)?)?,
                            name: r.try_get(3)?,
                            insert_time: r.try_get(4)?,
                        })
                    })
                    .collect()
            }

            async fn segments(
                &self,
                tenant: &$crate::ids::TenantId,
            ) -> $crate::Result<Vec<$crate::catalog::SegmentRecord>> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT segment_id, size, block_count, insert_time FROM segments WHERE tenant = ",
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
            time_range: Option<(i64, i64)>,
            pending: bool,
        ) -> sqlx::QueryBuilder<$db> {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT block_id, kind, format, process_id, stream_id, segment_id, byte_offset, byte_length, \
                 uncompressed_length, codec, checksum, event_count, min_time, max_time, insert_time \
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
                    })
                })
                .collect()
        }

        /// Partitions of a tenant: of one view (all when `None`), overlapping a time range.
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
            q.push(" ORDER BY min_insert_time, partition_id");
            q
        }

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
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO partitions (tenant, partition_id, view_name, level, min_time, max_time, \
                     min_insert_time, max_insert_time, row_count, size, insert_time) ",
                );
                q.push_values([partition], |mut b, p| {
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
                q.build().execute(&mut *tx).await?;
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
        }
    };
}

pub(crate) use impl_sql_catalog;
