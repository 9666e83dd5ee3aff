// A Node.js session against Meshgate with @lakehouse-rs/flight-sql-client, run by
// tests/e2e/test_node_client.py: log in, run a query, list catalogs, schemas and tables
// (with their Arrow schemas), and run a query that fails.
//
// Usage: MESHGATE_USER=... MESHGATE_PASSWORD=... node session.js HOST PORT
// Prints one JSON object on standard output.
//
// The client has no close(): its connection keeps Node's event loop alive, so the
// script ends with process.exit. It also never settles a promise when its log-in
// fails (a panic in a Rust worker thread), hence the overall time limit.

'use strict';

const { createFlightSqlClient } = require('@lakehouse-rs/flight-sql-client');
const { tableFromIPC, RecordBatchReader } = require('apache-arrow');

const TIME_LIMIT_MS = 60000;

function rows(buffer) {
  const table = tableFromIPC(buffer);
  return {
    fields: table.schema.fields.map((field) => ({ name: field.name, type: String(field.type), nullable: field.nullable })),
    rows: table.toArray().map((row) => row.toJSON()),
  };
}

function fieldsOf(schemaBytes) {
  // GetTables' table_schema: an IPC-encapsulated Arrow schema.
  const reader = RecordBatchReader.from(schemaBytes);
  reader.open();
  return reader.schema.fields.map((field) => ({ name: field.name, type: String(field.type), nullable: field.nullable }));
}

function json(value) {
  return JSON.stringify(value, (key, item) => (typeof item === 'bigint' ? Number(item) : item));
}

async function main() {
  const [host, port] = process.argv.slice(2);
  const client = await createFlightSqlClient({
    host,
    port: Number(port),
    username: process.env.MESHGATE_USER,
    password: process.env.MESHGATE_PASSWORD,
    tls: false,
    headers: [],
  });
  const out = {};
  out.query = rows(
    await client.query(
      'SELECT status, count(*) AS n, CAST(sum(total) AS DOUBLE) AS revenue FROM sales.orders GROUP BY status ORDER BY status',
    ),
  );
  out.join = rows(
    await client.query(
      "SELECT count(*) AS n FROM sales.orders o JOIN logistics.shipments s ON s.order_id = o.order_id WHERE s.carrier = 'DHL'",
    ),
  );
  out.catalogs = rows(await client.getCatalogs()).rows.map((row) => row.catalog_name);
  out.schemas = rows(await client.getDbSchemas({ catalog: 'mesh' })).rows.map((row) => row.db_schema_name);
  const tables = tableFromIPC(await client.getTables({ catalog: 'mesh', dbSchemaFilterPattern: 'sales', includeSchema: true }));
  out.tables = tables.toArray().map((row) => ({
    schema: row.db_schema_name,
    table: row.table_name,
    type: row.table_type,
    fields: fieldsOf(row.table_schema),
  }));
  try {
    await client.query('SELECT no_such_column FROM sales.orders');
    out.error = null;
  } catch (error) {
    out.error = error.message;
  }
  out.after_error = rows(await client.query('SELECT 1 AS one')).rows;
  return out;
}

setTimeout(() => {
  process.stdout.write(json({ fatal: `no answer within ${TIME_LIMIT_MS / 1000} s` }) + '\n');
  process.exit(3);
}, TIME_LIMIT_MS).unref();

main().then(
  (out) => {
    process.stdout.write(json(out) + '\n');
    process.exit(0);
  },
  (error) => {
    process.stdout.write(json({ fatal: String(error && error.message ? error.message : error) }) + '\n');
    process.exit(1);
  },
);
