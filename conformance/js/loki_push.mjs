// Push log lines to framelake's Loki push API with winston-loki (protobuf +
// snappy).
//
// Usage: node loki_push.mjs --url BASE --out FILE [--org-id TENANT]
//
// Logs three lines at three levels, with explicit times and a `step` label,
// through one batch of winston-loki's transport (snappy-compressed protobuf:
// the `snappy` package must load, or the transport would fall back to JSON),
// and writes to FILE what was logged: each line with its labels and time in
// nanoseconds. Exits 1 when the push failed.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import winston from 'winston';
import LokiTransport from 'winston-loki';

const { values: args } = parseArgs({
  options: { url: { type: 'string' }, out: { type: 'string' }, 'org-id': { type: 'string' } },
});
if (!args.url || !args.out) {
  console.error('usage: node loki_push.mjs --url BASE --out FILE [--org-id TENANT]');
  process.exit(2);
}
// The protobuf form needs snappy; without it winston-loki silently sends JSON.
createRequire(import.meta.url)('snappy');

const failures = [];
const transport = new LokiTransport({
  host: args.url,
  labels: { app: 'winston-loki' },
  json: false,
  replaceTimestamp: false, // keep the times given below
  batching: true,
  interval: 3600, // one batch, sent by close() below
  format: winston.format.printf((info) => info.message),
  headers: args['org-id'] ? { 'X-Scope-OrgID': args['org-id'] } : {},
  gracefulShutdown: false,
  onConnectionError: (error) => failures.push(String(error)),
});
const logger = winston.createLogger({ level: 'info', transports: [transport] });

const base = 1_700_000_000_000; // ms since the epoch
const lines = [
  ['info', 'first line'],
  ['warn', 'disk almost full'],
  ['error', 'payment failed'],
];
const sent = lines.map(([level, line], step) => {
  logger.log({ level, message: line, timestamp: base + step, labels: { step: String(step) } });
  return {
    line,
    labels: { app: 'winston-loki', level, step: String(step) },
    time_unix_nano: String((base + step) * 1_000_000),
  };
});
await transport.close();
writeFileSync(args.out, JSON.stringify({ lines: sent }, null, 2) + '\n');
if (failures.length > 0) {
  console.error('push failed:\n  ' + failures.join('\n  '));
  process.exit(1);
}
process.exit(0);
