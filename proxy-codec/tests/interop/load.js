'use strict';
// A bounded Bolt load generator on sofa-rpc-node's RpcClient: --clients K clients,
// each with its one connection to --target, keep --concurrency N echo calls in flight
// in total until --duration-ms passed or --max-calls were sent. Every answer is
// checked against its own argument.
//
//   node load.js --target 127.0.0.1:12200 --concurrency 64 --duration-ms 5000
//
// With --cpu-pid PID (Linux), the CPU time process PID spent during the measured
// window (after the warm-up) is read from /proc and reported per call.
//
// Prints one JSON line: calls, errors, wrong answers, elapsed ms, calls/s, latency
// percentiles (ms). Exits 1 when any call failed or got another caller's answer.

const fs = require('fs');
const { RpcClient } = require('sofa-rpc-node').client;
const { parseArgs } = require('./lib/args');

const args = parseArgs(process.argv.slice(2), {
  target: '127.0.0.1:12200',
  clients: '1',
  concurrency: '64',
  'duration-ms': '5000',
  'max-calls': '10000000',
  'payload-bytes': '64',
  'warmup-ms': '500',
  timeout: '5000',
  'cpu-pid': '',
  'clk-tck': '100',
});

// utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat).
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / Number(args['clk-tck']);
}

const logger = { info() {}, warn() {}, debug() {}, error() {} };

async function main() {
  const clients = [];
  const consumers = [];
  for (let i = 0; i < Number(args.clients); i++) {
    const client = new RpcClient({ logger });
    const consumer = client.createConsumer({
      interfaceName: 'com.example.EchoService',
      serverHost: args.target,
      responseTimeout: Number(args.timeout),
    });
    await consumer.ready();
    clients.push(client);
    consumers.push(consumer);
  }
  const pad = 'x'.repeat(Math.max(0, Number(args['payload-bytes']) - 12));
  const opts = { responseTimeout: Number(args.timeout) };

  // Warm-up: connections open, JIT warm; not counted.
  const warmEnd = Date.now() + Number(args['warmup-ms']);
  await Promise.all(consumers.map(async c => {
    while (Date.now() < warmEnd) await c.invoke('echo', [ 'warm' ], opts);
  }));

  const maxCalls = Number(args['max-calls']);
  const cpuPid = args['cpu-pid'] ? String(args['cpu-pid']) : null;
  const cpuStart = cpuPid ? cpuSeconds(cpuPid) : 0;
  const start = process.hrtime.bigint();
  const endAt = Date.now() + Number(args['duration-ms']);
  let sent = 0;
  let done = 0;
  let errors = 0;
  let wrong = 0;
  let firstError = null;
  const latencies = [];
  const worker = async w => {
    const consumer = consumers[w % consumers.length];
    while (Date.now() < endAt && sent < maxCalls) {
      const n = sent++;
      const arg = `${n.toString(36).padStart(12, '0')}${pad}`;
      const t0 = process.hrtime.bigint();
      try {
        const res = await consumer.invoke('echo', [ arg ], opts);
        if (res !== arg) wrong++;
      } catch (err) {
        errors++;
        if (!firstError) firstError = `${err.name}: ${err.message}`;
      }
      done++;
      if (latencies.length < 200000) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  const workers = [];
  for (let w = 0; w < Number(args.concurrency); w++) workers.push(worker(w));
  await Promise.all(workers);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = cpuPid ? cpuSeconds(cpuPid) - cpuStart : null;
  latencies.sort((a, b) => a - b);
  const pct = p => latencies.length ? Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(3)) : null;
  const report = {
    ok: errors === 0 && wrong === 0,
    calls: done,
    errors,
    wrong,
    firstError,
    ms: Number(ms.toFixed(1)),
    callsPerSec: Number((done / (ms / 1000)).toFixed(1)),
    latencyMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: pct(1) },
    cpuPid,
    cpuMs: cpu === null ? null : Number((cpu * 1000).toFixed(1)),
    cpuUsPerCall: cpu === null || done === 0 ? null : Number((cpu * 1e6 / done).toFixed(2)),
    clients: clients.length,
    concurrency: Number(args.concurrency),
  };
  for (const c of clients) c.close();
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}

main().catch(err => {
  process.stdout.write(JSON.stringify({ ok: false, fatal: String(err && err.stack || err) }) + '\n');
  process.exit(1);
});
