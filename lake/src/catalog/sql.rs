//! The SQL both backends share. The statements are the same text; QueryBuilder
//! writes each backend's placeholders. Only connecting differs per backend.

/// Rows per multi-row INSERT: 16 binds a row stays under both backends' bind limits.
pub(crate) const INSERT_CHUNK: usize = 1000;

/// Implements [`Catalog`](super::Catalog) for `$name { pool: Pool<$db> }`.
macro_rules! impl_sql_catalog {
    ($name:ident, $db:ty) => {
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
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT block_id, kind, format, process_id, stream_id, segment_id, byte_offset, byte_length, \
                     uncompressed_length, codec, checksum, event_count, min_time, max_time, insert_time \
                     FROM blocks WHERE tenant = ",
                );
                q.push_bind(tenant.as_str());
                if !filter.kinds.is_empty() {
                    q.push(" AND kind IN (");
                    let mut list = q.separated(", ");
                    for kind in &filter.kinds {
                        list.push_bind(kind.code());
                    }
                    q.push(")");
                }
                if let Some((min, max)) = filter.time_range {
                    q.push(" AND max_time >= ").push_bind(min);
                    q.push(" AND min_time <= ").push_bind(max);
                }
                q.push(" ORDER BY insert_time, segment_id, byte_offset");
                let rows = q.build().fetch_all(&self.pool).await?;
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
    };
}

pub(crate) use impl_sql_catalog;
