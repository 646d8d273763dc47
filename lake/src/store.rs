//! The object store, chosen by URL: `file://`, `memory://` or `s3://bucket/prefix`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::catalog::LogLocation;
use crate::ids::{SegmentId, TenantId};
use crate::seglog::SegmentLog;
use crate::{Error, Result};

/// A log takes the segments of one hour, up to this size.
const LOG_ROTATE_BYTES: u64 = 1 << 30;
const HOUR_MS: u64 = 3_600_000;

/// How to reach an S3-compatible store. Fields left empty fall back to the
/// usual AWS environment and instance metadata.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server (MinIO, moto, R2, ...); empty for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The lake's object store, with what durability needs to know about it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// For local files: what syncing writes to disk needs.
    local: Option<Arc<LocalFiles>>,
    url: String,
}

/// A local-files store's root, and the folders under it whose own entries are
/// known to be on disk, so that a write syncs only its file, its folder and
/// the folders created for it (a directory sync is a device cache flush).
/// Nothing removes folders while the process runs; whatever comes to (retention)
/// must forget them here.
#[derive(Debug)]
struct LocalFiles {
    root: PathBuf,
    durable_dirs: Mutex<HashSet<PathBuf>>,
    /// Each tenant's log the writer appends segments to.
    logs: Mutex<std::collections::HashMap<TenantId, OpenLog>>,
}

/// The segment logs of a local-files store (see [`Store::segment_logs`]).
#[derive(Debug, Clone)]
pub struct SegmentLogs(Arc<LocalFiles>);

impl SegmentLogs {
    /// Appends a tenant's segment (given as its parts, in order) to the
    /// tenant's log durably, in the calling thread, which may block (a flush
    /// writes its segment in the thread that built it), and answers where it
    /// lies.
    pub fn append(
        &self,
        tenant: &TenantId,
        segment: SegmentId,
        parts: &[Bytes],
    ) -> Result<LogLocation> {
        self.0.append_segment(tenant, segment, parts)
    }
}

#[derive(Debug)]
struct OpenLog {
    key: String,
    /// The hour (ms since the epoch / 1 h) of its first segment.
    hour: u64,
    log: SegmentLog,
}

impl Store {
    /// Opens the store a URL names. `file://` paths may be relative to the working directory.
    pub fn open(url: &str, s3: &S3Options) -> Result<Self> {
        let invalid = |why: String| Error::InvalidInput(format!("object store url {url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://...".to_owned()))?;
        match scheme {
            "memory" => Ok(Store {
                inner: Arc::new(InMemory::new()),
                local: None,
                url: url.to_owned(),
            }),
            "file" => {
                let root = PathBuf::from(if rest.is_empty() { "." } else { rest });
                std::fs::create_dir_all(&root)?;
                let root = root.canonicalize()?;
                let local = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
                Ok(Store {
                    inner: Arc::new(local),
                    local: Some(Arc::new(LocalFiles {
                        root,
                        durable_dirs: Mutex::default(),
                        logs: Mutex::default(),
                    })),
                    url: url.to_owned(),
                })
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("missing bucket name".to_owned()));
                }
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(10),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(Duration::from_secs(30))
                            .with_connect_timeout(Duration::from_secs(5)),
                    );
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let s3_store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
                let inner: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                    "" => s3_store,
                    prefix => Arc::new(PrefixStore::new(s3_store, prefix)),
                };
                Ok(Store {
                    inner,
                    local: None,
                    url: url.to_owned(),
                })
            }
            other => Err(invalid(format!(
                "unsupported scheme {other:?}: use file://, memory:// or s3://"
            ))),
        }
    }

    /// The local-files store under `data_dir/objects`: the embedded default.
    pub fn local(data_dir: &Path) -> Result<Self> {
        Self::open(
            &format!("file://{}", data_dir.join("objects").display()),
            &S3Options::default(),
        )
    }

    /// The underlying store, for readers.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes an object durably: when this returns, the bytes survive a crash of
    /// this process (and, for local files, of the machine).
    pub async fn put_durable(
        &self,
        path: &object_store::path::Path,
        data: impl Into<PutPayload>,
    ) -> Result<()> {
        let data = data.into();
        match &self.local {
            Some(local) => {
                let local = Arc::clone(local);
                let path = path.clone();
                tokio::task::spawn_blocking(move || local.write_durable(&path, data.as_ref()))
                    .await
                    .map_err(|e| Error::task("object write", e))?
            }
            None => {
                self.inner.put(path, data).await?;
                Ok(())
            }
        }
    }

    /// For local files, the tenants' segment logs; `None` for the other
    /// stores, where a segment is an object of its own
    /// ([`Store::put_durable`]). The writer asks once, at start.
    pub fn segment_logs(&self) -> Option<SegmentLogs> {
        self.local
            .as_ref()
            .map(|local| SegmentLogs(Arc::clone(local)))
    }

    /// Reads a byte range of an object.
    pub async fn get_range(
        &self,
        path: &object_store::path::Path,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes> {
        Ok(self.inner.get_range(path, range).await?)
    }

    /// Reads a whole object.
    pub async fn get(&self, path: &object_store::path::Path) -> Result<Bytes> {
        Ok(self.inner.get(path).await?.bytes().await?)
    }
}

impl LocalFiles {
    /// Writes `data` to a staging file next to its object (named as
    /// `object_store`'s local store names them, so that listings skip it), syncs
    /// it, renames it into place and syncs the folder holding it and every
    /// folder created for it: one open, vectored writes, two or more syncs.
    fn write_durable(&self, path: &object_store::path::Path, data: &[Bytes]) -> Result<()> {
        let target = self.root.join(path.as_ref());
        let dir = target.parent().unwrap_or(&self.root).to_owned();
        let (mut file, staged) = Self::create_staged(&target, &dir)?;
        let written = write_all_vectored(&mut file, data).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written.and_then(|()| std::fs::rename(&staged, &target)) {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
        self.sync_dirs(&dir)
    }

    /// Appends to the tenant's log, opening a new one for a new hour, past
    /// [`LOG_ROTATE_BYTES`], or after a failed append (whose record may be torn:
    /// nothing is appended after it).
    fn append_segment(
        &self,
        tenant: &TenantId,
        segment: SegmentId,
        parts: &[Bytes],
    ) -> Result<LogLocation> {
        let mut logs = self.logs.lock().expect("logs lock");
        let hour = segment.unix_millis() / HOUR_MS;
        let reusable = logs
            .get(tenant)
            .is_some_and(|open| open.hour == hour && open.log.len() < LOG_ROTATE_BYTES);
        if !reusable {
            logs.remove(tenant);
            let key = crate::paths::log_path(tenant, segment).to_string();
            let path = self.root.join(&key);
            let dir = path.parent().unwrap_or(&self.root).to_owned();
            std::fs::create_dir_all(&dir)?;
            let log = SegmentLog::create(&path)?;
            self.sync_dirs(&dir)?;
            logs.insert(tenant.clone(), OpenLog { key, hour, log });
        }
        let open = logs.get_mut(tenant).expect("just opened");
        let first = open.log.is_empty();
        match open.log.append(segment, parts) {
            Ok(record) => Ok(LogLocation {
                object: open.key.clone(),
                offset: record.offset,
            }),
            Err(e) => {
                let failed = logs.remove(tenant).expect("open");
                // A log whose first append failed holds nothing acknowledged:
                // gone, so that a full disk does not gain a file per flush.
                if first {
                    let _ = std::fs::remove_file(self.root.join(&failed.key));
                }
                Err(e)
            }
        }
    }

    /// Creates `target#N` for the first free N, creating its folders as needed.
    fn create_staged(target: &Path, dir: &Path) -> Result<(std::fs::File, PathBuf)> {
        let mut n = 1u32;
        loop {
            let mut staged = target.as_os_str().to_owned();
            staged.push(format!("#{n}"));
            let staged = PathBuf::from(staged);
            match std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&staged)
            {
                Ok(file) => return Ok((file, staged)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
                    std::fs::create_dir_all(dir)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Syncs `dir` (it holds a new entry) and every folder from there up to the
    /// root not yet known to be on disk.
    fn sync_dirs<'a>(&'a self, mut dir: &'a Path) -> Result<()> {
        let sync = |path: &Path| std::fs::File::open(path)?.sync_all();
        sync(dir)?;
        while dir != self.root && dir.starts_with(&self.root) && !self.is_durable(dir) {
            let parent = dir.parent().unwrap_or(&self.root);
            sync(parent)?;
            self.durable_dirs
                .lock()
                .expect("durable dirs lock")
                .insert(dir.to_owned());
            dir = parent;
        }
        Ok(())
    }

    fn is_durable(&self, dir: &Path) -> bool {
        self.durable_dirs
            .lock()
            .expect("durable dirs lock")
            .contains(dir)
    }
}

/// Writes every part in order, as few system calls as the kernel allows.
fn write_all_vectored(file: &mut std::fs::File, parts: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
