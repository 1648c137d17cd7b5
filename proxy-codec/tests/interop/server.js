'use strict';
// An RPC server on sofa-rpc-node's RpcServer, speaking Bolt (sofa-bolt-node, the
// default protocol) or Dubbo (js-remoting-for-apache-dubbo, the Dubbo project's
// Node remoting, as egg-dubbo-rpc uses it). Direct connections only: no registry.
//
//   node server.js --protocol bolt|dubbo [--port 0] [--name NAME]
//                  [--echo-service com.example.EchoService] [--other-service com.example.OtherService]
//
// Prints `LISTENING <port>` on stdout once bound, then serves until killed.
// Services (version 1.0, the sofa-rpc-node default; names changeable by the flags):
//   com.example.EchoService   echo(s) -> s, echoAfter(s, ms) -> s after ms,
//                             tagAfter(s, ms) -> NAME + ':' + s after ms,
//                             connections() -> client connections open right now,
//                             huge(n) -> a string of n characters,
//                             whoami() -> NAME, fail(msg) throws Error(msg)
//   com.example.OtherService  whoami() -> NAME + '/other'

const { RpcServer } = require('sofa-rpc-node').server;
const { parseArgs } = require('./lib/args');

const args = parseArgs(process.argv.slice(2), {
  protocol: 'bolt',
  port: '0',
  name: 'server',
  'echo-service': 'com.example.EchoService',
  'other-service': 'com.example.OtherService',
});

const quiet = {
  info() {},
  warn() {},
  debug() {},
  error(err) {
    // Business errors thrown by `fail` are expected; log anything else.
    if (!(err && err.expected)) console.error('[server] error:', err && err.stack || err);
  },
};

let protocol;
if (args.protocol === 'bolt') {
  protocol = require('sofa-bolt-node');
} else if (args.protocol === 'dubbo') {
  protocol = require('js-remoting-for-apache-dubbo');
} else {
  console.error(`unknown --protocol ${args.protocol}`);
  process.exit(2);
}

const server = new RpcServer({
  logger: quiet,
  port: Number(args.port),
  protocol,
  // The test decides when the server dies; never let sofa's graceful handler
  // keep a dead process around.
  killTimeout: 1000,
});

server.addService({ interfaceName: args['echo-service'] }, {
  async echo(s) {
    return s;
  },
  async echoAfter(s, ms) {
    await new Promise(resolve => setTimeout(resolve, Number(ms)));
    return s;
  },
  async tagAfter(s, ms) {
    await new Promise(resolve => setTimeout(resolve, Number(ms)));
    return args.name + ':' + s;
  },
  async whoami() {
    return args.name;
  },
  async huge(n) {
    return 'h'.repeat(Number(n));
  },
  async connections() {
    return new Promise(resolve => server.getConnections((err, n) => resolve(err ? -1 : n)));
  },
  async fail(msg) {
    const err = new Error(String(msg));
    err.expected = true;
    throw err;
  },
});

server.addService({ interfaceName: args['other-service'] }, {
  async whoami() {
    return args.name + '/other';
  },
});

server.on('error', err => {
  if (!(err && err.expected)) console.error('[server] error:', err && err.message);
});

server.start().then(() => {
  process.stdout.write(`LISTENING ${server.publishPort}\n`);
}, err => {
  console.error('[server] cannot start:', err);
  process.exit(1);
});

for (const sig of [ 'SIGTERM', 'SIGINT' ]) {
  process.on(sig, () => process.exit(0));
}
