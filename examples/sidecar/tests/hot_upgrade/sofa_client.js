'use strict';
// Bolt load across hot upgrades, on sofa-rpc-node's RpcClient: --clients K clients,
// each with its one connection to --target, each keeping --in-flight echoAfter(arg,
// --slow-ms) calls in flight until --stop-file exists; then waits for every answer.
//
//   node sofa_client.js --target HOST:PORT --stop-file PATH [--clients 8]
//                       [--in-flight 8] [--slow-ms 150] [--timeout 8000]
//
// Counts every TCP connect the process makes (net.Socket.prototype.connect), and
// every socket error (ECONNRESET ...) and close of the clients' connections. Prints
// `READY` once every client is connected, then one JSON line at the end; exits 0
// when every call got its own answer, no connection closed or failed, and the
// clients connected exactly once each.

const net = require('net');
const fs = require('fs');

let connects = 0;
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  connects++;
  return connect.apply(this, args);
};

const { RpcClient } = require('sofa-rpc-node').client;

const args = {
  target: '127.0.0.1:12200', 'stop-file': '', clients: '8', 'in-flight': '8',
  'slow-ms': '150', timeout: '8000',
};
const argv = process.argv.slice(2);
for (let i = 0; i + 1 < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];

const report = { ok: true, calls: 0, answered: 0, errors: 0, wrong: 0, connects: 0, socketErrors: [], closes: 0, failures: [] };
const fail = msg => {
  report.ok = false;
  if (report.failures.length < 20) report.failures.push(msg);
};
const logger = { info() {}, warn() {}, debug() {}, error() {} };
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function main() {
  const clients = [];
  let stopping = false;
  for (let i = 0; i < Number(args.clients); i++) {
    const client = new RpcClient({ logger });
    const consumer = client.createConsumer({
      interfaceName: 'com.example.EchoService',
      serverHost: args.target,
      responseTimeout: Number(args.timeout),
    });
    await consumer.ready();
    const conn = await consumer.getConnection(consumer.createRequest('echo', [], {}));
    if (!conn) throw new Error(`no connection to ${args.target}`);
    conn._socket.on('error', err => report.socketErrors.push(String(err && err.code || err)));
    conn._socket.on('close', () => {
      report.closes++;
      if (!stopping) fail(`client ${i}: its connection closed`);
    });
    clients.push({ client, consumer });
  }
  process.stdout.write('READY\n');
  const opts = { responseTimeout: Number(args.timeout) };
  const slow = { $class: 'int', $: Number(args['slow-ms']) };
  let n = 0;
  const worker = async consumer => {
    while (!fs.existsSync(args['stop-file'])) {
      const arg = `call-${n++}-${Math.random().toString(36).slice(2)}`;
      report.calls++;
      try {
        const res = await consumer.invoke('echoAfter', [ arg, slow ], opts);
        if (res === arg) report.answered++;
        else {
          report.wrong++;
          fail(`${arg} answered ${JSON.stringify(res)}`);
        }
      } catch (err) {
        report.errors++;
        fail(`${arg}: ${err.name}: ${err.message}`);
      }
    }
  };
  const workers = [];
  for (const { consumer } of clients) {
    for (let k = 0; k < Number(args['in-flight']); k++) {
      workers.push(worker(consumer));
      await sleep(2);
    }
  }
  await Promise.all(workers);
  stopping = true;
  report.connects = connects;
  if (connects !== clients.length) fail(`${connects} connects by ${clients.length} clients`);
  if (report.socketErrors.length) fail(`socket errors: ${report.socketErrors.join(', ')}`);
  for (const { client } of clients) client.close();
}

main().then(() => {
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}, err => {
  fail(`fatal: ${err && err.stack || err}`);
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(1);
});
