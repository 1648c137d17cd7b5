'use strict';
// A Dubbo client on dubbo2.js's DirectlyDubbo (direct connect, hessian2): one socket
// to --target (a server or the proxy) carries every call. Phases, each when asked:
//
//   --calls N --concurrency C   N echo calls, C in flight; every answer must be the
//                               caller's own argument (random delays reorder answers)
//   --big N --big-bytes B       N concurrent echo calls with a B-byte argument (default
//                               100000), so frames span many TCP reads
//   --heartbeats H              H heartbeat events, each the frame dubbo2.js's own
//                               HeartBeat.encode() builds (its timer fires every 180 s);
//                               every one must be answered with a heartbeat response
//                               (sent one after the other's answer: see below)
//   --oneway K                  K one-way requests (js-remoting-for-apache-dubbo's
//                               Request with isTwoWay false; dubbo2.js has none)
//   --unknown                   a call to a service nobody serves: must fail with an
//                               error answer, not a timeout
//   --connections               asks the server how many connections it has open
//   --whoami S1,S2              calls whoami() on each service, reports the answers
//   --slow N --slow-ms MS       N tagAfter calls in flight while the test kills a
//                               server; prints `SENT` once all are written
//   --service NAME              the echo service's interface (default com.example.EchoService)
//   --timeout MS                per-call timeout (default 5000; dubbo2.js counts seconds)
//
// Prints one JSON line with the results; exits 0 when every check held, 1 otherwise.

const java = require('js-to-java');
const DirectlyDubbo = require('dubbo2.js/es7/directly-dubbo').default;
const HeartBeat = require('dubbo2.js/es7/heartbeat').default;
const DubboRequest = require('js-remoting-for-apache-dubbo/lib/protocol/request');
const Invocation = require('js-remoting-for-apache-dubbo/lib/protocol/invocation');
const { FrameSplitter } = require('./lib/frames');
const { parseArgs } = require('./lib/args');
const { runPool, token, sleep, finish } = require('./lib/common');

const args = parseArgs(process.argv.slice(2), {
  target: '127.0.0.1:20880',
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
  timeout: '5000',
  service: 'com.example.EchoService',
});

const timeoutMs = Number(args.timeout);
const report = { ok: true, failures: [] };
const fail = msg => {
  report.ok = false;
  report.failures.push(msg);
};

const methods = {
  echo(s) { return [ java.String(s) ]; },
  echoAfter(s, ms) { return [ java.String(s), java.int(ms) ]; },
  tagAfter(s, ms) { return [ java.String(s), java.int(ms) ]; },
  whoami() { return []; },
  huge(n) { return [ java.int(n) ]; },
  connections() { return []; },
};

async function main() {
  const dubbo = DirectlyDubbo.from({
    dubboAddress: args.target,
    dubboVersion: '2.0.2',
    dubboInvokeTimeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
  });
  const service = name => dubbo.proxyService({
    dubboInterface: name,
    version: '1.0',
    timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
    methods,
  });
  const echo = service(args.service);

  // Wait for the one socket, then watch what arrives on it.
  const worker = dubbo._socketWorker;
  const connectDeadline = Date.now() + timeoutMs;
  while (!worker.isAvaliable && Date.now() < connectDeadline) await sleep(5);
  if (!worker.isAvaliable) throw new Error(`cannot connect to ${args.target}`);
  const socket = worker._socket;
  let heartbeatAnswers = 0;
  const watcher = new FrameSplitter('dubbo', (frame, kind) => {
    if (kind === 'dubbo_heartbeat_response') heartbeatAnswers++;
  });
  socket.on('data', chunk => watcher.push(chunk));
  let reconnected = false;
  socket.once('close', () => { reconnected = true; });

  const calls = Number(args.calls);
  if (calls > 0) {
    const started = Date.now();
    let okCalls = 0;
    let mismatched = 0;
    const errors = [];
    await runPool(calls, Number(args.concurrency), async i => {
      const arg = token('dubbo', i);
      const delayed = i % 4 === 0;
      const { res, err } = delayed ? await echo.echoAfter(arg, i % 20) : await echo.echo(arg);
      if (err) errors.push(`${err.name}: ${err.message}`);
      else if (res === arg) okCalls++;
      else mismatched++;
    });
    report.calls = { sent: calls, ok: okCalls, mismatched, errors: errors.length, ms: Date.now() - started };
    if (okCalls !== calls) fail(`calls: ${okCalls}/${calls} ok, ${mismatched} mismatched, first errors ${JSON.stringify(errors.slice(0, 3))}`);
  }

  const big = Number(args.big);
  if (big > 0) {
    const results = await Promise.all(Array.from({ length: big }, async (_, i) => {
      const arg = token('big', i).padEnd(Number(args['big-bytes']), String.fromCharCode(97 + i % 26));
      const { res } = await echo.echo(arg);
      return res === arg;
    }));
    report.big = { sent: big, ok: results.filter(Boolean).length, bytes: Number(args['big-bytes']) };
    if (report.big.ok !== big) fail(`big: ${report.big.ok}/${big} ok`);
  }

  const heartbeats = Number(args.heartbeats);
  if (heartbeats > 0) {
    // One at a time: dubbo2.js's DecodeBuffer handles one heartbeat answer per
    // received chunk and leaves later frames of that chunk waiting for more data.
    const before = heartbeatAnswers;
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < heartbeats && Date.now() < deadline; i++) {
      socket.write(HeartBeat.encode());
      while (heartbeatAnswers - before < i + 1 && Date.now() < deadline) await sleep(2);
    }
    const answered = heartbeatAnswers - before;
    // The connection must still carry calls after the heartbeats.
    const arg = token('after-heartbeat', 0);
    const { res } = await echo.echo(arg);
    report.heartbeats = { sent: heartbeats, answered, followUp: res === arg };
    if (answered !== heartbeats) fail(`heartbeats: ${answered}/${heartbeats} answered`);
    if (res !== arg) fail('heartbeats: the call after the heartbeats failed');
  }

  const oneway = Number(args.oneway);
  if (oneway > 0) {
    for (let i = 0; i < oneway; i++) {
      const req = new DubboRequest(900000000 + i);
      req.isTwoWay = false;
      req.data = new Invocation({
        methodName: 'echo',
        args: [ java.String(token('oneway', i)) ],
        attachments: { dubbo: '2.0.2', path: args.service, version: '1.0' },
      });
      socket.write(req.encode());
    }
    const arg = token('after-oneway', 0);
    const { res, err } = await echo.echo(arg);
    report.oneway = { sent: oneway, followUp: res === arg };
    if (res !== arg) fail(`oneway: the call after the one-way requests failed: ${err && err.message}`);
  }

  if (args.unknown) {
    const started = Date.now();
    const { res, err } = await service('com.example.NoSuchService').echo('x');
    const ms = Date.now() - started;
    report.unknown = { error: err ? `${err.name}: ${err.message}` : null, value: res, ms };
    if (!err) fail('unknown service: the call succeeded');
    else if (/timeout/.test(err.message)) fail('unknown service: timed out instead of an error answer');
  }

  if (args.connections) {
    report.serverConnections = (await echo.connections()).res;
  }

  if (args.whoami) {
    report.whoami = {};
    for (const name of String(args.whoami).split(',')) {
      const { res, err } = await service(name).whoami();
      report.whoami[name] = err ? `ERROR ${err.name}: ${err.message}` : res;
    }
  }

  const slow = Number(args.slow);
  if (slow > 0) {
    const started = Date.now();
    const pending = [];
    for (let i = 0; i < slow; i++) {
      const arg = token('slow', i);
      pending.push(echo.tagAfter(arg, Number(args['slow-ms'])).then(({ res, err }) => {
        if (err) return { error: `${err.name}: ${err.message}`, ms: Date.now() - started };
        const server = typeof res === 'string' && res.endsWith(':' + arg) ? res.slice(0, -arg.length - 1) : null;
        return { server, value: res, ms: Date.now() - started };
      }));
    }
    const huge = Number(args.huge);
    const hugeCall = huge > 0 ? echo.huge(huge).then(({ res, err }) => {
      report.huge = err ? { error: `${err.name}: ${err.message}`, ms: Date.now() - started }
        : { length: typeof res === 'string' ? res.length : -1, ms: Date.now() - started };
    }) : Promise.resolve();
    process.stdout.write('SENT\n');
    const results = await Promise.all(pending);
    await hugeCall;
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

  // dubbo2.js reconnects silently; every call above must have used the first socket.
  report.connections = reconnected ? 2 : 1;
  if (reconnected) fail('the connection closed during the run');
  socket.destroy();
}

finish(main, report);
