'use strict';
// Splits a byte stream into Bolt (v1, v2) or Dubbo frames and names each frame's
// kind. Used to watch heartbeat answers on a client socket and to cut fixtures.

// Bolt: proto 1 (v1) or 2 (v2); type 0 response, 1 request, 2 one-way request;
// cmdcode 0 heartbeat, 1 request, 2 response.
function boltLength(buf) {
  if (buf.length < 2) return 0;
  if (buf[0] === 1) {
    const response = buf[1] === 0;
    const head = response ? 20 : 22;
    if (buf.length < head) return 0;
    return response ?
      head + buf.readUInt16BE(12) + buf.readUInt16BE(14) + buf.readUInt32BE(16) :
      head + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18);
  }
  if (buf[0] === 2) {
    if (buf.length < 3) return 0;
    const response = buf[2] === 0;
    const head = response ? 22 : 24;
    if (buf.length < head) return 0;
    const len = response ?
      head + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18) :
      head + buf.readUInt16BE(16) + buf.readUInt16BE(18) + buf.readUInt32BE(20);
    return buf[11] === 1 ? len + 4 : len;
  }
  throw new Error(`not a Bolt frame: first byte ${buf[0]}`);
}

function boltKind(frame) {
  const v2 = frame[0] === 2;
  const type = frame[v2 ? 2 : 1];
  const cmd = frame.readUInt16BE(v2 ? 3 : 2);
  const prefix = v2 ? (frame[11] === 1 ? 'bolt_v2_crc' : 'bolt_v2') : 'bolt_v1';
  if (cmd === 0) return `${prefix}_heartbeat${type === 0 ? '_ack' : ''}`;
  if (type === 2) return `${prefix}_oneway_request`;
  return `${prefix}_${type === 0 ? 'response' : 'request'}`;
}

function boltId(frame) {
  return frame.readUInt32BE(frame[0] === 2 ? 6 : 5);
}

// Dubbo: 16-byte header, magic 0xdabb, flag byte (0x80 request, 0x40 two-way,
// 0x20 event, low 5 bits serialization), status, 8-byte id, 4-byte body length.
function dubboLength(buf) {
  if (buf.length < 16) return 0;
  if (buf[0] !== 0xda || buf[1] !== 0xbb) throw new Error('not a Dubbo frame: bad magic');
  return 16 + buf.readUInt32BE(12);
}

function dubboKind(frame) {
  const flag = frame[2];
  const request = (flag & 0x80) !== 0;
  const event = (flag & 0x20) !== 0;
  if (event) return request ? 'dubbo_heartbeat_request' : 'dubbo_heartbeat_response';
  if (!request) return frame[3] === 20 ? 'dubbo_response' : `dubbo_error_response_status${frame[3]}`;
  return (flag & 0x40) !== 0 ? 'dubbo_request' : 'dubbo_oneway_request';
}

function dubboId(frame) {
  return frame.readBigUInt64BE(4);
}

const PROTOCOLS = {
  bolt: { length: boltLength, kind: boltKind, id: boltId },
  dubbo: { length: dubboLength, kind: dubboKind, id: dubboId },
};

// Feed chunks with push(); onFrame(frame, kind) is called for every whole frame.
class FrameSplitter {
  constructor(protocol, onFrame) {
    this.p = PROTOCOLS[protocol];
    if (!this.p) throw new Error(`unknown protocol ${protocol}`);
    this.onFrame = onFrame;
    this.buf = Buffer.alloc(0);
  }

  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([ this.buf, chunk ]) : chunk;
    for (;;) {
      const len = this.p.length(this.buf);
      if (len === 0 || this.buf.length < len) return;
      const frame = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      this.onFrame(frame, this.p.kind(frame), this.p.id(frame));
    }
  }
}

module.exports = { FrameSplitter, PROTOCOLS };
