//! Starts the real servers and exercises them end to end.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use framelake_testkit::{postgres, s3};
use sqlx::{Connection, PgConnection};

/// Serialises the tests that use (and may stop) the shared servers.
static PG_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static S3_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHILD_VAR: &str = "FRAMELAKE_TESTKIT_WATCHDOG_CHILD";

async fn select_one(url: &str) -> i32 {
    let mut conn = PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("SELECT 1");
    conn.close().await.expect("close connection");
    one
}

#[tokio::test]
async fn postgres_databases_are_fresh_and_queryable() {
    let _guard = PG_LOCK.lock().await;
    let first = postgres().create_database("Testkit smoke!").await;
    let second = postgres().create_database("Testkit smoke!").await;
    assert_ne!(first, second);
    assert!(first.starts_with("postgres://"), "{first}");
    assert_eq!(select_one(&first).await, 1);
    let mut conn = PgConnection::connect(&second)
        .await
        .expect("connect to the second database");
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .expect("current_database()");
    assert!(second.ends_with(&format!("/{name}")), "{second} vs {name}");
    assert!(name.starts_with("testkit_smoke_"), "{name}");
}

#[tokio::test]
async fn postgres_stop_and_start_keep_data() {
    let _guard = PG_LOCK.lock().await;
    let pg = postgres();
    if !pg.can_restart() {
        eprintln!("FRAMELAKE_TEST_DATABASE_URL is set: stop/start are not supported, not tested");
        return;
    }
    let url = pg.create_database("restart").await;
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
        .execute(&mut conn)
        .await
        .expect("create and fill a table");
    pg.stop();
    pg.stop(); // idempotent
    assert!(
        sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
        "old connection is dead"
    );
    assert!(
        PgConnection::connect(&url).await.is_err(),
        "server must refuse while stopped"
    );
    pg.start();
    pg.start(); // idempotent
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("connect after restart");
    let v: i32 = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut conn)
        .await
        .expect("read back");
    assert_eq!(v, 42);
}

#[tokio::test]
async fn s3_bucket_put_and_get_object_unsigned() {
    let _guard = S3_LOCK.lock().await;
    let s3 = s3();
    assert_eq!(s3.region(), "us-east-1");
    assert_eq!(
        (s3.access_key_id(), s3.secret_access_key()),
        ("test", "test")
    );
    let bucket = s3.create_bucket("Testkit_Smoke").await;
    assert!(bucket.starts_with("testkit-smoke-"), "{bucket}");
    let client = reqwest::Client::new();
    let url = format!("{}/{bucket}/dir/hello.txt", s3.endpoint());
    let auth = s3.dummy_authorization();
    let put = client
        .put(&url)
        .body("hello, lake")
        .send()
        .await
        .expect("PUT object");
    assert!(put.status().is_success(), "PUT answered {}", put.status());
    let anonymous = client.get(&url).send().await.expect("anonymous GET object");
    assert_eq!(
        anonymous.status().as_u16(),
        403,
        "moto denies anonymous reads"
    );
    let get = client
        .get(&url)
        .header("authorization", auth)
        .send()
        .await
        .expect("GET object");
    assert!(get.status().is_success(), "GET answered {}", get.status());
    assert_eq!(get.text().await.expect("object body"), "hello, lake");
    let missing = format!("{}/{bucket}/nope", s3.endpoint());
    let get = client
        .get(&missing)
        .header("authorization", auth)
        .send()
        .await
        .expect("GET missing");
    assert_eq!(get.status().as_u16(), 404);
}

#[tokio::test]
async fn s3_stop_and_start_give_an_empty_server() {
    let _guard = S3_LOCK.lock().await;
    let s3 = s3();
    let bucket = s3.create_bucket("restart").await;
    let client = reqwest::Client::new();
    let bucket_url = format!("{}/{bucket}", s3.endpoint());
    s3.stop();
    assert!(
        client.head(&bucket_url).send().await.is_err(),
        "server must be down"
    );
    s3.start();
    let head = client
        .head(&bucket_url)
        .send()
        .await
        .expect("HEAD bucket after restart");
    assert_eq!(head.status().as_u16(), 404, "state is lost on restart");
    let again = s3.create_bucket("restart").await;
    assert_ne!(again, bucket);
}

/// What `servers_die_with_the_test_process` runs in its child process:
/// starts both servers and reports where they are (with `hold`, keeps them
/// up for 60 s, to try killing the process by hand).
async fn start_servers_and_report(mode: std::ffi::OsString) {
    let admin = postgres().admin_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect as admin");
    let data_dir: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut conn)
        .await
        .expect("data dir");
    println!("CHILD pg={admin} s3={} data={data_dir}", s3().endpoint());
    if mode == "hold" {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

fn port_of(url: &str) -> u16 {
    let after_colon = url.rsplit(':').next().expect("url has a port");
    let digits: String = after_colon
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("numeric port")
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Servers a test process started stop, and their folders go, once it is
/// gone: this test runs itself again as that process (`CHILD_VAR` set), which
/// starts them, reports them and exits.
#[test]
fn servers_die_with_the_test_process() {
    if let Some(mode) = std::env::var_os(CHILD_VAR) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(start_servers_and_report(mode));
        return;
    }
    let exe = std::env::current_exe().expect("path of this test binary");
    let output = Command::new(exe)
        .args([
            "--exact",
            "servers_die_with_the_test_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .env_remove("FRAMELAKE_TEST_DATABASE_URL")
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("CHILD pg=").map(|i| &l[i..]))
        .expect("child reported servers");
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .expect("field in the child's report")
            .to_owned()
    };
    let (pg_port, s3_port) = (port_of(&field("pg=")), port_of(&field("s3=")));
    let data_dir = field("data=");
    let root = Path::new(&data_dir)
        .parent()
        .expect("data dir has a parent")
        .to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (port_open(pg_port) || port_open(s3_port) || root.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !port_open(pg_port),
        "postgres on {pg_port} outlived its test process"
    );
    assert!(
        !port_open(s3_port),
        "moto on {s3_port} outlived its test process"
    );
    assert!(!root.exists(), "{} was not removed", root.display());
}
