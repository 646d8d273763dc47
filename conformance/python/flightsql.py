"""Queries framelake's Arrow FlightSQL endpoint the way Python users do, with
the ADBC FlightSQL driver (DB-API: statements, prepared statements with
parameters, catalog calls) and with plain pyarrow.flight, and prints what it
read as JSON for the Rust conformance test to check:

    python flightsql.py --uri grpc://127.0.0.1:50051 --tenant default --service NAME --out FILE [--token TOKEN]

With --token, every call carries `Authorization: Bearer TOKEN`, and the output
also holds the error of a query without it.
"""

import argparse
import json

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow.flight as flight


def hexes(column):
    return sorted(v.hex() if v is not None else None for v in column.to_pylist())


def any_command(type_name: str, query: str) -> bytes:
    """A FlightSQL command packed in google.protobuf.Any, encoded by hand."""

    def field(number: int, payload: bytes) -> bytes:
        length, out = len(payload), bytearray()
        while True:
            byte = length & 0x7F
            length >>= 7
            out.append(byte | (0x80 if length else 0))
            if not length:
                break
        return bytes([number << 3 | 2]) + bytes(out) + payload

    command = field(1, query.encode())
    url = f"type.googleapis.com/arrow.flight.protocol.sql.{type_name}".encode()
    return field(1, url) + field(2, command)


def error_of(cursor, sql):
    try:
        cursor.execute(sql)
        cursor.fetch_arrow_table()
    except adbc_driver_manager.Error as e:
        return type(e).__name__ + ": " + str(e)
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--token")
    args = parser.parse_args()
    header = "adbc.flight.sql.rpc.call_header.x-scope-orgid"
    db_kwargs = {header: args.tenant}
    call_headers = [(b"x-scope-orgid", args.tenant.encode())]
    out = {}
    if args.token:
        with flightsql.connect(args.uri, db_kwargs=dict(db_kwargs)) as conn:
            with conn.cursor() as cur:
                out["without_token"] = error_of(cur, "SELECT count(*) FROM spans")
        db_kwargs["adbc.flight.sql.authorization_header"] = f"Bearer {args.token}"
        call_headers.append((b"authorization", f"Bearer {args.token}".encode()))

    with flightsql.connect(args.uri, db_kwargs=db_kwargs) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT span_id, name FROM spans WHERE service_name = '{args.service}'"
            )
            table = cur.fetch_arrow_table()
            out["spans"] = hexes(table.column("span_id"))
            out["span_id_type"] = str(table.schema.field("span_id").type)

            # A prepared statement with a bound parameter.
            cur.execute(
                "SELECT body FROM log_entries WHERE service_name = ? ORDER BY body",
                parameters=(args.service,),
            )
            out["logs"] = cur.fetch_arrow_table().column("body").to_pylist()

            out["errors"] = {
                "syntax": error_of(cur, "SELEC 1"),
                "unknown_table": error_of(cur, "SELECT * FROM nope"),
                "write": error_of(cur, "CREATE TABLE t AS SELECT 1"),
            }

        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        out["catalogs"] = sorted(o["catalog_name"] for o in objects)
        out["tables"] = sorted(
            table["table_name"]
            for o in objects
            for schema in o["catalog_db_schemas"]
            for table in schema["db_schema_tables"]
        )
        spans_schema = conn.adbc_get_table_schema("spans", catalog_filter="framelake", db_schema_filter="public")
        out["spans_columns"] = spans_schema.names
        info = conn.adbc_get_info()
        out["vendor_name"] = info.get("vendor_name")

    # Plain pyarrow.flight: GetFlightInfo with a CommandStatementQuery, then DoGet.
    client = flight.FlightClient(args.uri)
    options = flight.FlightCallOptions(headers=call_headers)
    descriptor = flight.FlightDescriptor.for_command(
        any_command(
            "CommandStatementQuery",
            f"SELECT span_id FROM spans WHERE service_name = '{args.service}'",
        )
    )
    info = client.get_flight_info(descriptor, options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    out["pyarrow_spans"] = hexes(table.column("span_id"))

    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
