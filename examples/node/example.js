// A small tallyq client in Node with the stock @grpc/grpc-js runtime. The
// service definitions are loaded from ../../proto at run time by
// @grpc/proto-loader: nothing generated is committed.
//
// Produces with dedup ids (a resent batch is not stored or billed twice),
// consumes on the streaming Consume RPC with acks, honours the broker's
// `retry-after-ms` on refusals, and reads the tenant's usage.
//
//   node example.js --server 127.0.0.1:50051 --key tq_acme_... [--topic demo-node]

'use strict';

const path = require('node:path');
const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(
  ['broker', 'admin', 'operator', 'billing'].map((n) => `tallyq/v1/${n}.proto`),
  { includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: String, defaults: true },
);
const tallyq = grpc.loadPackageDefinition(definition).tallyq.v1;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Calls a unary method; a refusal carrying `retry-after-ms` is retried after
// that wait with the same request (dedup ids make a retried produce safe).
async function call(client, method, request, metadata, attempts = 20) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await new Promise((resolve, reject) => {
        client[method](request, metadata, (err, reply) => (err ? reject(err) : resolve(reply)));
      });
    } catch (err) {
      const wait = err.metadata && err.metadata.get('retry-after-ms')[0];
      if (wait === undefined || attempt === attempts - 1) throw err;
      console.log(`refused ${grpc.status[err.code]}: retrying after ${wait} ms`);
      await sleep(Number(wait));
    }
  }
}

async function ensure(client, method, request, metadata) {
  try {
    await call(client, method, request, metadata);
  } catch (err) {
    if (err.code !== grpc.status.ALREADY_EXISTS) throw err;
  }
}

async function produce(broker, auth, topic, count, batchSize) {
  const run = crypto.randomBytes(4).toString('hex');
  const batches = [];
  for (let first = 0; first < count; first += batchSize) {
    const batch = [];
    for (let i = first; i < Math.min(count, first + batchSize); i += 1) {
      batch.push({
        payload: Buffer.from(`reading ${i}`),
        device_id: 'sensor-2',
        dedup_id: `${run}-${i}`,
        headers: { unit: 'celsius' },
      });
    }
    batches.push(batch);
  }
  const offsets = [];
  for (const messages of batches) {
    const reply = await call(broker, 'Produce', { topic, messages }, auth);
    const got = reply.results.map((r) => r.offset);
    offsets.push(...got);
    console.log(`produced offsets=${JSON.stringify(got)} units=${reply.units}`);
  }
  // A client that did not see its reply sends the batch again: same ids.
  const again = await call(broker, 'Produce', { topic, messages: batches[0] }, auth);
  const duplicate = again.results.every((r) => r.duplicate);
  const same = again.results.every((r, i) => r.offset === offsets[i]);
  console.log(`resent first batch: duplicate=${duplicate} same_offsets=${same} units=${again.units}`);
  return offsets;
}

function consume(broker, auth, topic, subscription, expected) {
  return new Promise((resolve, reject) => {
    const stream = broker.Consume(auth);
    const received = [];
    let done = false;
    stream.on('data', (push) => {
      const offsets = push.deliveries.map((d) => d.offset);
      for (const d of push.deliveries) {
        console.log(`consumed offset=${d.offset} attempt=${d.delivery_attempt} payload='${d.message.payload.toString()}'`);
      }
      received.push(...offsets);
      stream.write({ ack: { offsets } });
      if (received.length >= expected && !done) {
        done = true;
        stream.cancel();
        console.log(`consumed ${received.length} messages on one stream, all acked`);
        resolve(received);
      }
    });
    stream.on('error', (err) => {
      if (!done) reject(err);
    });
    stream.write({ start: { topic, subscription, max_outstanding_messages: 100 } });
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      server: { type: 'string', default: '127.0.0.1:50051' },
      key: { type: 'string' },
      topic: { type: 'string', default: 'demo-node' },
      count: { type: 'string', default: '10' },
    },
  });
  if (!values.key) throw new Error('--key <tenant API key> is required');
  const auth = new grpc.Metadata();
  auth.set('authorization', `Bearer ${values.key}`);
  const credentials = grpc.credentials.createInsecure();
  const admin = new tallyq.Admin(values.server, credentials);
  const broker = new tallyq.Broker(values.server, credentials);

  await ensure(admin, 'CreateTopic', { name: values.topic }, auth);
  await ensure(admin, 'CreateSubscription', {
    topic: values.topic, name: 'workers', config: { lock_seconds: 30 },
  }, auth);
  const offsets = await produce(broker, auth, values.topic, Number(values.count), 2);
  const received = await consume(broker, auth, values.topic, 'workers', offsets.length);
  const sorted = (a) => [...a].sort((x, y) => x - y).join(',');
  if (sorted(received) !== sorted(offsets)) {
    throw new Error(`consumed ${sorted(received)}, produced ${sorted(offsets)}`);
  }
  const usage = await call(admin, 'GetUsage', {}, auth);
  for (const line of usage.lines) {
    if (line.dimension === 'topic' && line.name === values.topic) {
      console.log(`usage day=${line.day} topic=${line.name} produced_units=${line.produced_units} delivered_units=${line.delivered_units} message_units=${line.message_units}`);
    }
  }
  admin.close();
  broker.close();
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
