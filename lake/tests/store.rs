//! One object store suite, run on local files, memory and a real S3-compatible server.

use bytes::Bytes;
use framelake_lake::ids::{SegmentId, TenantId};
use framelake_lake::store::{S3Options, Store};

pub(crate) async fn s3_store() -> Store {
    let s3 = framelake_testkit::s3();
    let bucket = s3.create_bucket("lake").await;
    Store::open(&format!("s3://{bucket}/some/prefix"), &s3_options(s3)).expect("s3 store opens")
}

pub(crate) fn s3_options(s3: &framelake_testkit::S3Server) -> S3Options {
    S3Options {
        endpoint: Some(s3.endpoint()),
        region: Some(s3.region().to_owned()),
        access_key_id: Some(s3.access_key_id().to_owned()),
        secret_access_key: Some(s3.secret_access_key().to_owned()),
    }
}

async fn exercise(store: &Store) {
    let path = object_store::path::Path::from("tenants/a/segments/x.flseg");
    let data = Bytes::from(
        (0..10_000u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    // In parts, as a flush writes a segment (header, blocks, index).
    let parts: object_store::PutPayload = [data.slice(..1000), data.slice(1000..)]
        .into_iter()
        .collect();
    store.put_durable(&path, parts).await.expect("put");
    assert_eq!(store.get(&path).await.expect("get"), data);
    assert_eq!(
        store.get_range(&path, 100..164).await.expect("range"),
        data.slice(100..164)
    );
    let missing = object_store::path::Path::from("tenants/a/segments/missing.flseg");
    assert!(store.get(&missing).await.is_err());
}

#[tokio::test]
async fn local_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::local(dir.path()).expect("opens");
    exercise(&store).await;
    assert!(
        dir.path()
            .join("objects/tenants/a/segments/x.flseg")
            .is_file(),
        "objects live under data-dir/objects"
    );

    // A staging file left by a crash neither blocks a write nor shows as an object;
    // a write replaces the object.
    let folder = dir.path().join("objects/tenants/b/segments");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join("y.flseg#1"), b"torn").expect("leftover");
    let path = object_store::path::Path::from("tenants/b/segments/y.flseg");
    store
        .put_durable(&path, Bytes::from_static(b"first"))
        .await
        .expect("put");
    store
        .put_durable(&path, Bytes::from_static(b"second"))
        .await
        .expect("put");
    assert_eq!(store.get(&path).await.expect("get").as_ref(), b"second");
    let listed: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(
        store
            .object_store()
            .list(Some(&object_store::path::Path::from("tenants/b"))),
    )
    .await
    .expect("list")
    .into_iter()
    .map(|meta| meta.location.to_string())
    .collect();
    assert_eq!(listed, ["tenants/b/segments/y.flseg"]);
    assert!(
        Store::open("memory://", &S3Options::default())
            .expect("opens")
            .segment_logs()
            .is_none(),
        "only local files keep segments in logs"
    );
}

#[tokio::test]
async fn local_files_append_each_tenants_segments_to_its_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::local(dir.path()).expect("opens");
    let (a, b): (TenantId, TenantId) = ("a".parse().expect("a"), "b".parse().expect("b"));
    let append = |tenant: &TenantId, id: SegmentId, text: &'static [u8]| {
        let (store, tenant) = (store.clone(), tenant.clone());
        let parts = [
            Bytes::from_static(&text[..2]),
            Bytes::from_static(&text[2..]),
        ];
        async move {
            tokio::task::spawn_blocking(move || {
                store
                    .segment_logs()
                    .expect("local files keep logs")
                    .append(&tenant, id, &parts)
            })
            .await
            .expect("task")
            .expect("appended")
        }
    };
    let first_id = SegmentId::new();
    let first = append(&a, first_id, b"first segment").await;
    let second = append(&a, SegmentId::new(), b"second").await;
    let other = append(&b, SegmentId::new(), b"b's").await;
    assert_eq!(first.object, second.object, "one log per tenant and hour");
    assert_eq!(
        first.object,
        framelake_lake::paths::log_path(&a, first_id).to_string()
    );
    assert!(first.object.starts_with("tenants/a/logs/"), "{first:?}");
    assert!(other.object.starts_with("tenants/b/logs/"), "{other:?}");
    assert!(second.offset > first.offset);
    for (location, text) in [
        (&first, &b"first segment"[..]),
        (&second, b"second"),
        (&other, b"b's"),
    ] {
        let path = object_store::path::Path::from(location.object.as_str());
        let range = location.offset..location.offset + text.len() as u64;
        assert_eq!(store.get_range(&path, range).await.expect("range"), text);
    }
}

#[tokio::test]
async fn memory() {
    exercise(&Store::open("memory://", &S3Options::default()).expect("opens")).await;
}

#[tokio::test]
async fn s3_compatible_server() {
    exercise(&s3_store().await).await;
}

#[test]
fn bad_urls_are_refused() {
    for url in ["ftp://x", "no-scheme", "s3://"] {
        let err = Store::open(url, &S3Options::default()).expect_err(url);
        assert!(err.to_string().contains("object store url"), "{url}: {err}");
    }
}
