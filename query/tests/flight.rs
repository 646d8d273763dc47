//! FlightSQL from Rust's own client: tokens and tenants, prepared statements
//! with parameters, and errors with the gRPC status each calls for.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use futures::TryStreamExt;
use tonic::Code;

use crate::data::{T0, logs_at};
use crate::{Stack, TOKENS};

async fn client(stack: &Stack) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(stack.flight_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("FlightSQL listener answers");
    FlightSqlServiceClient::new(channel)
}

/// Runs a statement; the rows of its first column as text, or the gRPC code.
async fn run(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> Result<Vec<String>, (Code, String)> {
    let failed = |e: FlightError| match e {
        FlightError::Tonic(status) => (status.code(), status.message().to_owned()),
        other => (Code::Unknown, other.to_string()),
    };
    let info = client.execute(sql.to_owned(), None).await.map_err(failed)?;
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(batches
        .iter()
        .flat_map(|b| {
            let column = b.column(0);
            (0..column.len())
                .map(|i| arrow::util::display::array_value_to_string(column, i).expect("display"))
                .collect::<Vec<_>>()
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_tenants_hold_on_flightsql() {
    let stack = Stack::embedded(
        Tenancy::from_toml(TOKENS).expect("tokens"),
        QueryLimits::default(),
    )
    .await;
    let response = stack
        .client
        .post(format!("{}/v1/logs", stack.ingest_url))
        .header("content-type", "application/x-protobuf")
        .bearer_auth("writer-a")
        .body(logs_at(T0))
        .send()
        .await
        .expect("receiver answers");
    assert_eq!(response.status(), 200);
    let count = "SELECT count(*) FROM log_entries";

    let mut a = client(&stack).await;
    a.set_token("reader-a".into());
    assert_eq!(run(&mut a, count).await, Ok(vec!["4".to_owned()]));
    let mut b = client(&stack).await;
    b.set_token("reader-b".into());
    assert_eq!(run(&mut b, count).await, Ok(vec!["0".to_owned()]));
    b.set_header("x-scope-orgid", "a");
    assert_eq!(
        run(&mut b, count).await.map_err(|e| e.0),
        Err(Code::PermissionDenied)
    );
    let mut nobody = client(&stack).await;
    assert_eq!(
        run(&mut nobody, count).await.map_err(|e| e.0),
        Err(Code::Unauthenticated)
    );
    let mut writer = client(&stack).await;
    writer.set_token("writer-a".into());
    assert_eq!(
        run(&mut writer, count).await.map_err(|e| e.0),
        Err(Code::PermissionDenied)
    );
    // Catalog calls check the token too.
    match nobody.get_tables(CommandGetTables::default()).await {
        Err(FlightError::Tonic(status)) => assert_eq!(status.code(), Code::Unauthenticated),
        other => panic!("GetTables without a token: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_bind_parameters_and_errors_map_to_grpc_codes() {
    let limits = QueryLimits {
        memory_bytes: 4 << 20,
        ..QueryLimits::default()
    };
    let stack = Stack::embedded(Tenancy::open(), limits).await;
    stack.send("default", "logs", logs_at(T0)).await;
    let mut client = client(&stack).await;

    let mut prepared = client
        .prepare(
            "SELECT count(*) AS n FROM log_entries WHERE service_name = ? AND severity_number >= $2".into(),
            None,
        )
        .await
        .expect("prepares");
    assert_eq!(
        prepared.parameter_schema().expect("schema").fields().len(),
        2
    );
    let parameters = arrow::record_batch::RecordBatch::try_from_iter([
        (
            "1",
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["checkout"])) as _,
        ),
        (
            "2",
            std::sync::Arc::new(arrow::array::Int32Array::from(vec![13])) as _,
        ),
    ])
    .expect("batch");
    prepared.set_parameters(parameters).expect("parameters");
    let info = prepared.execute().await.expect("executes");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .expect("rows")
        .try_collect()
        .await
        .expect("rows");
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 2);

    for (sql, code) in [
        ("SELEC 1", Code::InvalidArgument),
        ("SELECT * FROM nope", Code::InvalidArgument),
        ("DROP VIEW spans", Code::InvalidArgument),
        (
            "SELECT v, count(*) FROM generate_series(1, 20000000) AS t(v) GROUP BY v ORDER BY 2 DESC LIMIT 1",
            Code::ResourceExhausted,
        ),
    ] {
        let got = run(&mut client, sql).await;
        assert_eq!(got.as_ref().map_err(|e| e.0), Err(code), "{sql}: {got:?}");
    }
}

/// What Grafana's FlightSQL datasource asks: the tables of type
/// `BASE TABLE` (its table list), one table with its schema (its column
/// list), and queries with its `$__dateBin` and `$__timeFilter` expansions.
#[tokio::test(flavor = "multi_thread")]
async fn grafana_flightsql_datasource_calls_work() {
    let stack = Stack::embedded(Tenancy::open(), QueryLimits::default()).await;
    stack.send("default", "logs", logs_at(T0)).await;
    let mut grafana = client(&stack).await;
    let tables = |command: CommandGetTables| {
        let mut grafana = grafana.clone();
        async move {
            let info = grafana.get_tables(command).await.expect("GetTables");
            let ticket = info.endpoint[0].ticket.clone().expect("ticket");
            let batches: Vec<_> = grafana
                .do_get(ticket)
                .await
                .expect("DoGet")
                .try_collect()
                .await
                .expect("rows");
            batches
        }
    };
    let listed = tables(CommandGetTables {
        table_types: vec!["BASE TABLE".into()],
        ..CommandGetTables::default()
    })
    .await;
    let names: Vec<String> = listed
        .iter()
        .flat_map(|b| {
            let names = b.column_by_name("table_name").expect("table_name");
            (0..names.len())
                .map(|i| arrow::util::display::array_value_to_string(names, i).expect("text"))
                .collect::<Vec<_>>()
        })
        .collect();
    for view in [
        "log_entries",
        "spans",
        "measures",
        "log_stats",
        "span_stats",
    ] {
        assert!(names.contains(&view.to_owned()), "{view} not in {names:?}");
    }
    let one = tables(CommandGetTables {
        table_name_filter_pattern: Some("log_entries".into()),
        include_schema: true,
        ..CommandGetTables::default()
    })
    .await;
    assert_eq!(one.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let schema = one[0].column_by_name("table_schema").expect("table_schema");
    let schema =
        arrow::ipc::convert::try_schema_from_ipc_buffer(schema.as_binary::<i32>().value(0))
            .expect("an IPC schema");
    assert!(
        schema.field_with_name("severity_text").is_ok(),
        "{schema:?}"
    );
    // `$__dateBin(time)` and `$__timeFilter(time)` as the datasource expands them.
    let sql = "SELECT date_bin(interval '60 second', time, timestamp '1970-01-01T00:00:00Z') AS time, count(*) \
               FROM log_entries WHERE time >= '2026-01-01T00:00:00Z' AND time <= '2026-01-01T00:05:00Z' \
               GROUP BY 1";
    assert_eq!(
        run(&mut grafana, sql).await,
        Ok(vec!["2026-01-01T00:00:00Z".to_owned()])
    );
}

/// A FlightSQL query past the time limit ends with DEADLINE_EXCEEDED and
/// says which limit, as the HTTP API answers 504.
#[tokio::test(flavor = "multi_thread")]
async fn a_flightsql_query_past_its_time_limit_ends_with_deadline_exceeded() {
    let limits = QueryLimits {
        timeout: std::time::Duration::from_secs(1),
        ..QueryLimits::default()
    };
    let stack = Stack::embedded(Tenancy::open(), limits).await;
    let mut client = client(&stack).await;
    // Minutes of work before its only row.
    let long = "SELECT count(*) AS n FROM generate_series(1, 100000000000)";
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(120), run(&mut client, long))
        .await
        .expect("ended by the time limit, not by this test");
    let (code, message) = outcome.expect_err("past the time limit");
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(message.contains("time limit of 1 s"), "{message}");
}
