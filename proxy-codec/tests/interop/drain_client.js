'use strict';
// A client held across a drain of the proxy: slow calls in flight, then, once the
// test has started the drain, more calls on the same connection.
//
//   node drain_client.js --target HOST:PORT --protocol bolt|dubbo --go-file PATH
//                        [--calls 100] [--late 10] [--slow-ms 1500] [--timeout 8000]
//
// Bolt: sofa-rpc-node's RpcClient (sofa-bolt-node); Dubbo: dubbo2.js's DirectlyDubbo.
// One connection carries every call. Sends --calls echoAfter(arg, slow-ms) calls,
// prints `SENT`, waits for --go-file to exist (the test creates it once the proxy
// drains), sends --late echo calls, waits for every answer and for the connection
// to close. Reports each group's answers and errors (with how long each took) and
// how the socket ended (`hadError`, socket errors such as ECONNRESET).
//
// Prints one JSON line; exits 0 when every call sent before the drain got its own
// answer, every late call failed promptly with an error answer (not a timeout, not
// a closed socket) and the socket closed without an error.

const fs = require('fs');
const { parseArgs } = require('./lib/args');
const { token, sleep, finish } = require('./lib/common');

const args = parseArgs(process.argv.slice(2), {
  target: '127.0.0.1:12200',
  protocol: 'bolt',
  'go-file': '',
  calls: '100',
  late: '10',
  'slow-ms': '1500',
  timeout: '8000',
});

const timeoutMs = Number(args.timeout);
const report = { ok: true, failures: [] };
const fail = msg => {
  report.ok = false;
  report.failures.push(msg);
};
const SERVICE = 'com.example.EchoService';

// The protocol's client: `call(method, arg, ms?)` resolves to { res, err }, and the
// one socket the calls share.
async function boltClient() {
  const { RpcClient } = require('sofa-rpc-node').client;
  const logger = { info() {}, warn() {}, debug() {}, error() {} };
  const client = new RpcClient({ logger });
  const consumer = client.createConsumer({ interfaceName: SERVICE, serverHost: args.target, responseTimeout: timeoutMs });
  await consumer.ready();
  const conn = await consumer.getConnection(consumer.createRequest('echo', [], {}));
  if (!conn) throw new Error(`no connection to ${args.target}`);
  const call = (method, arg, ms) => {
    const params = ms === undefined ? [ arg ] : [ arg, { $class: 'int', $: ms } ];
    return consumer.invoke(method, params, { responseTimeout: timeoutMs })
      .then(res => ({ res }), err => ({ err }));
  };
  return { call, socket: conn._socket, close: () => client.close() };
}

async function dubboClient() {
  const java = require('js-to-java');
  const DirectlyDubbo = require('dubbo2.js/es7/directly-dubbo').default;
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const dubbo = DirectlyDubbo.from({ dubboAddress: args.target, dubboVersion: '2.0.2', dubboInvokeTimeout: seconds });
  const echo = dubbo.proxyService({
    dubboInterface: SERVICE,
    version: '1.0',
    timeout: seconds,
    methods: {
      echo(s) { return [ java.String(s) ]; },
      echoAfter(s, ms) { return [ java.String(s), java.int(ms) ]; },
    },
  });
  const worker = dubbo._socketWorker;
  const deadline = Date.now() + timeoutMs;
  while (!worker.isAvaliable && Date.now() < deadline) await sleep(5);
  if (!worker.isAvaliable) throw new Error(`cannot connect to ${args.target}`);
  const call = (method, arg, ms) => (ms === undefined ? echo[method](arg) : echo[method](arg, ms))
    .then(({ res, err }) => ({ res, err }), err => ({ err }));
  // dubbo2.js reconnects on its own: the process exits once the report is written.
  return { call, socket: worker._socket, close: () => {} };
}

async function main() {
  const client = args.protocol === 'dubbo' ? await dubboClient() : await boltClient();
  const socket = client.socket;
  const socketErrors = [];
  socket.on('error', err => socketErrors.push(`${err.code || err.name}: ${err.message}`));
  const closed = new Promise(resolve => socket.once('close', hadError => resolve({ hadError })));

  const started = Date.now();
  const slowMs = Number(args['slow-ms']);
  const first = [];
  for (let i = 0; i < Number(args.calls); i++) {
    const arg = token('before', i);
    first.push(client.call('echoAfter', arg, slowMs).then(({ res, err }) => ({
      ok: !err && res === arg,
      error: err ? `${err.name}: ${err.message}` : (res === arg ? null : `wrong answer ${res}`),
      ms: Date.now() - started,
    })));
  }
  process.stdout.write('SENT\n');

  const goDeadline = Date.now() + 20000;
  while (!fs.existsSync(args['go-file'])) {
    if (Date.now() > goDeadline) throw new Error(`no ${args['go-file']} in 20 s`);
    await sleep(2);
  }
  const lateStarted = Date.now();
  const late = [];
  for (let i = 0; i < Number(args.late); i++) {
    const arg = token('late', i);
    late.push(client.call('echo', arg).then(({ res, err }) => ({
      ok: !err && res === arg,
      error: err ? `${err.name}: ${err.message}` : null,
      ms: Date.now() - lateStarted,
    })));
  }

  const firstResults = await Promise.all(first);
  const lateResults = await Promise.all(late);
  const end = await Promise.race([ closed, sleep(5000).then(() => ({ hadError: null, open: true })) ]);

  const failed = firstResults.filter(r => !r.ok);
  report.before = { sent: firstResults.length, ok: firstResults.length - failed.length, failed: failed.slice(0, 5) };
  report.late = {
    sent: lateResults.length,
    served: lateResults.filter(r => r.ok).length,
    errors: lateResults.filter(r => r.error).map(r => r.error).slice(0, 3),
    maxMs: Math.max(0, ...lateResults.map(r => r.ms)),
  };
  report.socket = { end, errors: socketErrors };
  if (failed.length > 0) fail(`before the drain: ${failed.length} calls without their answer, e.g. ${JSON.stringify(failed[0])}`);
  for (const r of lateResults) {
    if (r.ok) fail('a call sent during the drain was served');
    else if (!r.error) fail('a call sent during the drain got a wrong answer');
    else if (/timeout|closed|RpcSocket|ECONNRESET/i.test(r.error)) fail(`a call sent during the drain was not refused by an answer: ${r.error}`);
  }
  if (end.open) fail('the proxy did not close the connection');
  if (end.hadError || socketErrors.length > 0) fail(`the connection ended in an error: ${JSON.stringify(report.socket)}`);
  client.close();
}

finish(main, report);
