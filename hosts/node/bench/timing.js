// How long the host takes to end a call that does not end by itself, and
// whether a plugin's functions are compiled at load. The tests check what
// happens (test/limits.test.js, test/host.test.js, test/cancel.test.js);
// this script says how long it takes, which depends on the machine and its
// load and so is no test's business.
//
//   node hosts/node/bench/timing.js [--rounds N]
//
// Prints, each as the median and the slowest of N rounds (default 20):
//   - deadline: from the deadline to the TIMEOUT error (timeoutMs 50)
//   - closed: from close() after a TIMEOUT to closed() resolving
//   - cancel: from a cancel() in another thread to the CANCELLED error
//   - first call: the first call of a function with a 900 KB body, which
//     is fast when the load compiled it
//   - lazy: the same for a module the application compiles itself, which
//     V8 compiles on its first call unless the process says otherwise

import { Worker } from 'node:worker_threads';
import { loadPlugin, PabiError } from '../src/index.js';
import { buildPlugin, ioPlugin, op } from '../test/helpers.js';

const args = process.argv.slice(2);
const rounds = args[0] === '--rounds' ? Number(args[1]) : 20;

const now = () => Number(process.hrtime.bigint()) / 1e6;
const fail = (f) => {
  try {
    f();
  } catch (e) {
    if (e instanceof PabiError) return e;
    throw e;
  }
  throw new Error('the call succeeded');
};

function report(name, times) {
  const sorted = [...times].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  console.log(`${name.padEnd(12)} median ${median.toFixed(2).padStart(8)} ms   slowest ${sorted.at(-1).toFixed(2).padStart(8)} ms`);
}

async function deadlines() {
  const timeoutMs = 50;
  const late = [];
  const closing = [];
  for (let i = 0; i < rounds; i++) {
    const p = loadPlugin(ioPlugin(), { limits: { timeoutMs } });
    const start = now();
    const e = fail(() => p.call('spin'));
    if (e.kind !== 'TIMEOUT') throw e;
    late.push(now() - start - timeoutMs);
    const closeAt = now();
    p.close();
    await p.closed();
    closing.push(now() - closeAt);
  }
  report('deadline', late);
  report('closed', closing);
}

// The other thread cancels when the call has run, and says when (in the
// shared Float64 at offset 8) on the clock of process.hrtime.
async function cancels() {
  const times = [];
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 60000 } });
  const at = new Float64Array(new SharedArrayBuffer(16), 8, 1);
  const thread = new Worker(`
    const { workerData } = require('node:worker_threads');
    const pause = new Int32Array(new SharedArrayBuffer(4));
    const at = new Float64Array(workerData.at, 8, 1);
    import(workerData.url).then(({ Canceller }) => {
      const canceller = new Canceller(workerData.buffer);
      for (;;) {
        Atomics.wait(pause, 0, 0, 5);
        at[0] = Number(process.hrtime.bigint()) / 1e6;
        canceller.cancel();
      }
    });
  `, { eval: true, workerData: { url: new URL('../../shared/cancel.js', import.meta.url).href, buffer: p.canceller.buffer, at: at.buffer } });
  await new Promise((resolve) => thread.once('online', resolve));
  for (let i = 0; i < rounds; i++) {
    const e = fail(() => p.call('spin'));
    if (e.kind !== 'CANCELLED') throw e;
    times.push(now() - at[0]);
  }
  await thread.terminate();
  p.close();
  report('cancel', times);
}

function firstCalls() {
  const body = [];
  for (let i = 0; i < 150000; i++) body.push([0x41, 1, 0x41, 2, 0x6a, 0x1a]); // i32.const 1; i32.const 2; i32.add; drop
  const plugin = [];
  const application = [];
  for (let i = 0; i < rounds; i++) {
    // A constant of its own in each round, so that V8 cannot reuse a module
    // it compiled before.
    const code = [op.i32(i), [0x1a], body, op.i32(0)];
    const p = loadPlugin(buildPlugin({ functions: [{ export: 'pabi_fn_f', code }] }), { limits: { maxFunctionSize: 8 << 20 } });
    let start = now();
    p.call('f');
    plugin.push(now() - start);
    p.close();
    // The same module, compiled by the application.
    const bytes = buildPlugin({ functions: [{ export: 'pabi_fn_f', code: [op.i32(i + rounds), [0x1a], body, op.i32(0)] }] });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
      pabi: { input_read: () => 0, output_write: () => 0, error_write: () => 0, log: () => 0 },
    });
    start = now();
    instance.exports.pabi_fn_f();
    application.push(now() - start);
  }
  report('first call', plugin);
  report('lazy', application);
}

await deadlines();
await cancels();
firstCalls();
