'use strict';
// Small helpers shared by the interop clients.

const crypto = require('crypto');

// Runs job(0..count-1) with at most `concurrency` in flight.
exports.runPool = async (count, concurrency, job) => {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await job(i);
    }
  };
  const workers = [];
  for (let w = 0; w < Math.max(1, Math.min(concurrency, count)); w++) workers.push(worker());
  await Promise.all(workers);
};

// A unique argument per call, so an answer delivered to the wrong caller shows.
exports.token = (prefix, i) => `${prefix}-${i}-${crypto.randomBytes(6).toString('hex')}`;

exports.sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// Runs main, prints the report as one JSON line and exits 0 when it holds.
exports.finish = (main, report) => {
  main().then(() => {
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exit(report.ok ? 0 : 1);
  }, err => {
    report.ok = false;
    report.failures.push(`fatal: ${err && err.stack || err}`);
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exit(1);
  });
};
