'use strict';
// A Bolt client on sofa-rpc-node's RpcClient (sofa-bolt-node, hessian2), connected
// directly to --target (a server or the proxy). All calls share the one connection
// sofa-rpc-node keeps per address. Phases run in this order, each when asked:
//
//   --calls N --concurrency C   N echo calls, C in flight; every answer must be the
//                               caller's own argument (random delays reorder answers)
//   --big N --big-bytes B       N concurrent echo calls with a B-byte argument (default
//                               100000), so frames span many TCP reads
//   --heartbeats H              H heartbeats through the library's heartbeat(); every
//                               one must be acknowledged
//   --oneway K                  K one-way requests (sofa-bolt-node's REQUEST_ONEWAY)
//   --unknown                   a call to a service nobody serves: must fail with an
//                               error answer, not a timeout
//   --connections               asks the server how many connections it has open
//   --whoami S1,S2              calls whoami() on each service, reports the answers
//   --slow N --slow-ms MS       N tagAfter calls in flight while the test kills a
//                               server: prints `SENT` once all are written, then
//                               reports the answers per server name and the failures
//   --huge B                    with --slow: one more call, huge(B), whose answer is B
//                               bytes long, sent once the slow calls are written
//   --bolt-version 2 [--crc]    speak Bolt v2 (with CRC32 when --crc)
//   --service NAME              the echo service's interface (default com.example.EchoService)
//   --timeout MS                per-call timeout (default 5000)
//
// Prints one JSON line with the results; exits 0 when every check held, 1 otherwise.

const { RpcClient } = require('sofa-rpc-node').client;
const { parseArgs } = require('./lib/args');
const { runPool, token, sleep, finish } = require('./lib/common');

const args = parseArgs(process.argv.slice(2), {
  target: '127.0.0.1:12200',
  calls: '0',
  concurrency: '50',
  big: '0',
  'big-bytes': '100000',
  heartbeats: '0',
  oneway: '0',
  unknown: false,
  connections: false,
  whoami: '',
  slow: '0',
  huge: '0',
  'slow-ms': '1500',
  'bolt-version': '1',
  crc: false,
  timeout: '5000',
  service: 'com.example.EchoService',
});

const logger = { info() {}, warn() {}, debug() {}, error() {} };
const timeout = Number(args.timeout);
const report = { ok: true, failures: [] };
const fail = msg => {
  report.ok = false;
  report.failures.push(msg);
};

async function main() {
  const client = new RpcClient({ logger });
  const consumer = client.createConsumer({
    interfaceName: args.service,
    serverHost: args.target,
    responseTimeout: timeout,
  });
  await consumer.ready();
  const conn = await consumer.getConnection(consumer.createRequest('echo', [], {}));
  if (!conn) throw new Error(`no connection to ${args.target}`);
  if (args['bolt-version'] === '2') {
    conn._encoder.protocolType = 'bolt2';
    conn._encoder.boltVersion = 2;
    conn._encoder.crcEnable = !!args.crc;
  }
  const connections = new Set([ conn ]);
  const call = async (c, method, params) => {
    const res = await c.invoke(method, params, { responseTimeout: timeout });
    const used = await c.getConnection(c.createRequest(method, params, {}));
    if (used) connections.add(used);
    return res;
  };

  const calls = Number(args.calls);
  if (calls > 0) {
    const started = Date.now();
    let okCalls = 0;
    let mismatched = 0;
    const errors = [];
    await runPool(calls, Number(args.concurrency), async i => {
      const arg = token('bolt', i);
      // A quarter of the calls wait a little on the server, so answers come back
      // in another order than the requests went out.
      const delayed = i % 4 === 0;
      try {
        const res = delayed ?
          await call(consumer, 'echoAfter', [ arg, { $class: 'int', $: i % 20 } ]) :
          await call(consumer, 'echo', [ arg ]);
        if (res === arg) okCalls++; else mismatched++;
      } catch (err) {
        errors.push(`${err.name}: ${err.message}`);
      }
    });
    report.calls = { sent: calls, ok: okCalls, mismatched, errors: errors.length, ms: Date.now() - started };
    if (okCalls !== calls) fail(`calls: ${okCalls}/${calls} ok, ${mismatched} mismatched, first errors ${JSON.stringify(errors.slice(0, 3))}`);
  }

  const big = Number(args.big);
  if (big > 0) {
    const results = await Promise.all(Array.from({ length: big }, async (_, i) => {
      const arg = token('big', i).padEnd(Number(args['big-bytes']), String.fromCharCode(97 + i % 26));
      try {
        return (await call(consumer, 'echo', [ arg ])) === arg;
      } catch (err) {
        return false;
      }
    }));
    report.big = { sent: big, ok: results.filter(Boolean).length, bytes: Number(args['big-bytes']) };
    if (report.big.ok !== big) fail(`big: ${report.big.ok}/${big} ok`);
  }

  const heartbeats = Number(args.heartbeats);
  if (heartbeats > 0) {
    let acks = 0;
    conn._decoder.on('heartbeat_ack', () => { acks++; });
    for (let i = 0; i < heartbeats; i++) {
      // The library's own keep-alive: it sends only when idle past maxIdleTime.
      conn._lastActiveTime = 0;
      conn.heartbeat();
    }
    const deadline = Date.now() + timeout;
    while (acks < heartbeats && Date.now() < deadline) await sleep(10);
    report.heartbeats = { sent: heartbeats, acked: acks };
    if (acks !== heartbeats) fail(`heartbeats: ${acks}/${heartbeats} acknowledged`);
  }

  const oneway = Number(args.oneway);
  if (oneway > 0) {
    for (let i = 0; i < oneway; i++) {
      const req = consumer.createRequest('echo', [ token('oneway', i) ], {});
      req.oneway = true;
      conn._encoder.writeRequest(100000000 + i, req);
    }
    // The connection must still carry calls afterwards.
    const arg = token('after-oneway', 0);
    try {
      const res = await call(consumer, 'echo', [ arg ]);
      report.oneway = { sent: oneway, followUp: res === arg };
      if (res !== arg) fail('oneway: the call after the one-way requests got a wrong answer');
    } catch (err) {
      report.oneway = { sent: oneway, followUp: false };
      fail(`oneway: the call after the one-way requests failed: ${err.name}: ${err.message}`);
    }
  }

  if (args.unknown) {
    const unknown = client.createConsumer({
      interfaceName: 'com.example.NoSuchService',
      serverHost: args.target,
      responseTimeout: timeout,
    });
    await unknown.ready();
    const started = Date.now();
    try {
      const res = await unknown.invoke('echo', [ 'x' ], { responseTimeout: timeout });
      report.unknown = { answered: true, error: null, value: res };
      fail('unknown service: the call succeeded');
    } catch (err) {
      const ms = Date.now() - started;
      report.unknown = { error: `${err.name}: ${err.message}`, resultCode: err.resultCode, ms };
      if (err.name === 'RpcResponseTimeoutError') fail('unknown service: timed out instead of an error answer');
    }
  }

  if (args.connections) {
    report.serverConnections = await call(consumer, 'connections', []);
  }

  if (args.whoami) {
    report.whoami = {};
    for (const service of String(args.whoami).split(',')) {
      const c = client.createConsumer({ interfaceName: service, serverHost: args.target, responseTimeout: timeout });
      await c.ready();
      try {
        report.whoami[service] = await call(c, 'whoami', []);
      } catch (err) {
        report.whoami[service] = `ERROR ${err.name}: ${err.message}`;
      }
    }
  }

  const slow = Number(args.slow);
  if (slow > 0) {
    const started = Date.now();
    const results = [];
    const pending = [];
    for (let i = 0; i < slow; i++) {
      const arg = token('slow', i);
      pending.push(call(consumer, 'tagAfter', [ arg, { $class: 'int', $: Number(args['slow-ms']) } ])
        .then(res => {
          const server = typeof res === 'string' && res.endsWith(':' + arg) ? res.slice(0, -arg.length - 1) : null;
          results.push({ server, value: res, ms: Date.now() - started });
        }, err => { results.push({ error: `${err.name}: ${err.message}`, ms: Date.now() - started }); }));
    }
    const huge = Number(args.huge);
    if (huge > 0) {
      pending.push(call(consumer, 'huge', [ { $class: 'int', $: huge } ]).then(res => ({ res }), err => ({ err })).then(({ res, err }) => {
        report.huge = err ? { error: `${err.name}: ${err.message}`, ms: Date.now() - started }
          : { length: typeof res === 'string' ? res.length : -1, ms: Date.now() - started };
      }));
    }
    process.stdout.write('SENT\n');
    await Promise.all(pending);
    const byServer = {};
    for (const r of results) if (r.server) byServer[r.server] = (byServer[r.server] || 0) + 1;
    report.slow = {
      sent: slow,
      answeredBy: byServer,
      wrong: results.filter(r => !r.error && !r.server).length,
      failed: results.filter(r => r.error).map(r => ({ error: r.error, ms: r.ms })),
    };
    if (report.slow.wrong > 0) fail(`slow: ${report.slow.wrong} answers were not the caller's own`);
  }

  report.protocol = { type: conn._encoder.protocolType, boltVersion: conn._encoder.boltVersion, crc: conn._encoder.crcEnable };
  report.connections = connections.size;
  if (connections.size !== 1) fail(`calls used ${connections.size} connections, expected one`);
  client.close();
}

finish(main, report);
