'use strict';
// Captures real frames for proxy-codec/tests/fixtures: starts server.js (Bolt, then
// Dubbo), puts a recording TCP relay between it and the real clients
// (bolt_client.js, dubbo_client.js), cuts both directions into frames and writes a
// chosen frame of each kind as <name>.bin plus frames.json describing every file.
//
//   NODE_PATH=<deps>/node_modules node capture.js --out ../fixtures [--python-path <deps>/python]
//
// The dubbo-ssl-python frames are captured when --python-path (default
// $NODE_PATH/../python) holds that package.

const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');
const { FrameSplitter } = require('./lib/frames');
const { parseArgs } = require('./lib/args');

const args = parseArgs(process.argv.slice(2), {
  out: path.join(__dirname, '..', 'fixtures'),
  'python-path': process.env.NODE_PATH ? path.join(process.env.NODE_PATH.split(path.delimiter)[0], '..', 'python') : '',
});
const havePython = args['python-path'] && fs.existsSync(path.join(args['python-path'], 'dubbo_ssl'));

const versions = {};
for (const pkg of [ 'sofa-rpc-node', 'sofa-bolt-node', 'dubbo2.js', 'js-remoting-for-apache-dubbo', 'hessian.js' ]) {
  versions[pkg] = require(`${pkg}/package.json`).version;
}

function startServer(protocol) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ path.join(__dirname, 'server.js'), '--protocol', protocol, '--name', 'capture' ],
      { stdio: [ 'ignore', 'pipe', 'inherit' ] });
    let out = '';
    child.stdout.on('data', chunk => {
      out += chunk;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.once('exit', code => reject(new Error(`server exited with ${code}`)));
  });
}

// A relay on an ephemeral port that records every frame in both directions.
function startRelay(protocol, upstreamPort, frames) {
  return new Promise(resolve => {
    const server = net.createServer(down => {
      const up = net.connect(upstreamPort, '127.0.0.1');
      const c2s = new FrameSplitter(protocol, (frame, kind, id) => frames.push({ dir: 'client_to_server', kind, id, frame: Buffer.from(frame) }));
      const s2c = new FrameSplitter(protocol, (frame, kind, id) => frames.push({ dir: 'server_to_client', kind, id, frame: Buffer.from(frame) }));
      down.on('data', chunk => { c2s.push(chunk); up.write(chunk); });
      up.on('data', chunk => { s2c.push(chunk); down.write(chunk); });
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
      down.on('error', () => {});
      up.on('error', () => {});
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function runClient(script, clientArgs) {
  return new Promise((resolve, reject) => {
    const python = script.endsWith('.py');
    const child = spawn(python ? 'python3' : process.execPath, [ path.join(__dirname, script), ...clientArgs ], {
      stdio: [ 'ignore', 'pipe', python ? 'ignore' : 'inherit' ],
      env: python ? Object.assign({}, process.env, { PYTHONPATH: args['python-path'] }) : process.env,
    });
    let out = '';
    child.stdout.on('data', chunk => { out += chunk; });
    child.once('exit', code => {
      if (code === 0) resolve(out);
      else reject(new Error(`${script} ${clientArgs.join(' ')} exited with ${code}: ${out}`));
    });
  });
}

// What to keep from a scenario: [file name, direction, kind, which (first|last), what it is].
const SCENARIOS = [
  {
    protocol: 'bolt', client: 'bolt_client.js', producer: 'sofa-rpc-node RpcClient / sofa-bolt-node',
    args: [ '--calls', '1', '--concurrency', '1', '--heartbeats', '1', '--oneway', '1', '--unknown' ],
    keep: [
      [ 'bolt_v1_request', 'client_to_server', 'bolt_v1_request', 'first', 'echoAfter(String, int) on com.example.EchoService:1.0, hessian2' ],
      [ 'bolt_v1_response', 'server_to_client', 'bolt_v1_response', 'first', 'its answer (status 0, hessian2 SofaResponse)' ],
      [ 'bolt_v1_heartbeat', 'client_to_server', 'bolt_v1_heartbeat', 'first', 'heartbeat request (cmdcode 0)' ],
      [ 'bolt_v1_heartbeat_ack', 'server_to_client', 'bolt_v1_heartbeat_ack', 'first', 'heartbeat answer' ],
      [ 'bolt_v1_oneway_request', 'client_to_server', 'bolt_v1_oneway_request', 'first', 'one-way echo(String) (type 2)' ],
      [ 'bolt_v1_request_unknown_service', 'client_to_server', 'bolt_v1_request', 'last', 'echo(String) on com.example.NoSuchService:1.0' ],
      [ 'bolt_v1_response_unknown_service', 'server_to_client', 'bolt_v1_response', 'last', 'the server\'s error answer to it' ],
    ],
  },
  {
    protocol: 'bolt', client: 'bolt_client.js', producer: 'sofa-rpc-node RpcClient / sofa-bolt-node (protocolType bolt2)',
    args: [ '--calls', '1', '--concurrency', '1', '--heartbeats', '1', '--bolt-version', '2' ],
    keep: [
      [ 'bolt_v2_request', 'client_to_server', 'bolt_v2_request', 'first', 'Bolt v2 (ver1 2, no CRC) echoAfter(String, int)' ],
      [ 'bolt_v2_response', 'server_to_client', 'bolt_v2_response', 'first', 'its answer' ],
      [ 'bolt_v2_heartbeat', 'client_to_server', 'bolt_v2_heartbeat', 'first', 'Bolt v2 heartbeat' ],
      [ 'bolt_v2_heartbeat_ack', 'server_to_client', 'bolt_v2_heartbeat_ack', 'first', 'its answer' ],
    ],
  },
  {
    protocol: 'bolt', client: 'bolt_client.js', producer: 'sofa-rpc-node RpcClient / sofa-bolt-node (protocolType bolt2, crcEnable)',
    args: [ '--calls', '1', '--concurrency', '1', '--heartbeats', '1', '--oneway', '1', '--bolt-version', '2', '--crc' ],
    keep: [
      [ 'bolt_v2_crc_request', 'client_to_server', 'bolt_v2_crc_request', 'first', 'Bolt v2 with CRC32 (switch 1) echoAfter(String, int)' ],
      [ 'bolt_v2_crc_response', 'server_to_client', 'bolt_v2_crc_response', 'first', 'its answer, with CRC32' ],
      [ 'bolt_v2_crc_heartbeat', 'client_to_server', 'bolt_v2_crc_heartbeat', 'first', 'heartbeat with CRC32' ],
      [ 'bolt_v2_crc_heartbeat_ack', 'server_to_client', 'bolt_v2_crc_heartbeat_ack', 'first', 'its answer' ],
      [ 'bolt_v2_crc_oneway_request', 'client_to_server', 'bolt_v2_crc_oneway_request', 'first', 'one-way echo(String) with CRC32' ],
    ],
  },
  {
    protocol: 'dubbo', client: 'dubbo_client.js', producer: 'dubbo2.js DirectlyDubbo (one-way: js-remoting-for-apache-dubbo Request)',
    args: [ '--calls', '1', '--concurrency', '1', '--heartbeats', '1', '--oneway', '1', '--unknown' ],
    keep: [
      [ 'dubbo_request', 'client_to_server', 'dubbo_request', 'first', 'two-way echoAfter(String, int) on com.example.EchoService:1.0, hessian2 (dubbo2.js)' ],
      [ 'dubbo_response', 'server_to_client', 'dubbo_response', 'first', 'its answer, status 20 (js-remoting-for-apache-dubbo)' ],
      [ 'dubbo_heartbeat_request', 'client_to_server', 'dubbo_heartbeat_request', 'first', 'heartbeat event, two-way, body hessian null (dubbo2.js HeartBeat.encode)' ],
      [ 'dubbo_heartbeat_response', 'server_to_client', 'dubbo_heartbeat_response', 'first', 'heartbeat event answer' ],
      [ 'dubbo_oneway_request', 'client_to_server', 'dubbo_oneway_request', 'first', 'one-way echo(String) (js-remoting-for-apache-dubbo, two-way flag clear)' ],
      [ 'dubbo_request_unknown_service', 'client_to_server', 'dubbo_request', 'last', 'echo(String) on com.example.NoSuchService:1.0 (dubbo2.js)' ],
      [ 'dubbo_response_unknown_service', 'server_to_client', null, 'last', 'the server\'s answer to it' ],
    ],
  },
  {
    protocol: 'dubbo', client: 'dubbo_py_client.py', producer: 'PyPI dubbo-ssl-python 0.9.6 DubboClient', python: true,
    args: [ '--heartbeats', '1' ],
    keep: [
      [ 'dubbo_py_request', 'client_to_server', 'dubbo_request', 'first', 'two-way echo(String) on com.example.EchoService:1.0 (dubbo-ssl-python\'s own hessian2)' ],
      [ 'dubbo_py_response', 'server_to_client', 'dubbo_response', 'first', 'its answer (js-remoting-for-apache-dubbo)' ],
      [ 'dubbo_py_heartbeat_request', 'client_to_server', 'dubbo_heartbeat_request', 'first', 'dubbo-ssl-python\'s heartbeat event (non-zero id)' ],
    ],
  },
];

async function main() {
  fs.mkdirSync(args.out, { recursive: true });
  const manifest = { producedBy: versions, node: process.version, files: [] };
  for (const scenario of SCENARIOS) {
    if (scenario.python && !havePython) {
      process.stdout.write(`skipping ${scenario.producer}: no dubbo_ssl under --python-path ${args['python-path']}\n`);
      continue;
    }
    const { child, port } = await startServer(scenario.protocol);
    const frames = [];
    const relay = await startRelay(scenario.protocol, port, frames);
    try {
      await runClient(scenario.client, [ '--target', `127.0.0.1:${relay.address().port}`, ...scenario.args ]);
    } finally {
      relay.close();
      child.kill('SIGKILL');
    }
    for (const [ name, dir, kind, which, what ] of scenario.keep) {
      let candidates = frames.filter(f => f.dir === dir && (kind === null || f.kind === kind));
      if (which === 'last') candidates = candidates.slice(-1);
      const f = candidates[0];
      if (!f) throw new Error(`no ${kind} ${dir} frame captured for ${name}`);
      fs.writeFileSync(path.join(args.out, `${name}.bin`), f.frame);
      manifest.files.push({
        file: `${name}.bin`, protocol: scenario.protocol, kind: f.kind, direction: dir,
        requestId: String(f.id), bytes: f.frame.length, producer: scenario.producer, what,
      });
      process.stdout.write(`${name}.bin: ${f.kind} ${dir} id ${f.id} ${f.frame.length} bytes\n`);
    }
  }
  fs.writeFileSync(path.join(args.out, 'frames.json'), JSON.stringify(manifest, null, 2) + '\n');
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
