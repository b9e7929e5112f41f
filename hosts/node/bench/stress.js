// Stress of the call channel between the main thread and the worker that
// runs an instance (src/channel.js), under CPU contention: many calls of
// every kind that crosses it (plain calls, host calls, and the calls that
// end an instance: traps, deadlines, memory limits, a handler past the
// deadline, reloads), each checked for its exact result, and, now and
// then, a whole adapter process. A watchdog thread dumps the state of both
// sides of the channel when one call takes longer than --bound-ms, and
// ends the run.
//
//   node hosts/node/bench/stress.js [--calls N] [--burners K] [--bound-ms B]
//     [--adapter-every M] [--seed S]
//
//   --calls N          calls to make (default 100000)
//   --burners K        processes that only burn CPU beside the run
//                      (default: one per core)
//   --bound-ms B       the longest a call may take before the watchdog
//                      dumps both sides and ends the run (default 10000)
//   --adapter-every M  run the adapter command once every M calls, a
//                      whole process from start to exit (default 2000; 0: never)
//   --seed S           the seed of the mix (default 1)
//
// Prints the calls made by kind, the instances that ended (restarts), the
// slowest call of each kind, and a last line `stress: ok` or `stress:
// FAILED`. Exits 0 when every call gave its expected result within the
// bound, 1 otherwise. When the watchdog fires it prints the dump, has Node
// write a diagnostic report (report.*.json in the current folder, with the
// main thread's JavaScript stack) and kills the run (SIGKILL).

import { Worker } from 'node:worker_threads';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPlugin, PabiError } from '../src/index.js';
import { channelOf } from '../src/plugin.js';
import { ioPlugin, hcPlugin, hcInput } from '../test/helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');

// A seeded PRNG (mulberry32), so that a failing mix can be run again.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Watches the main thread from a thread of its own: the main thread blocks
// in Atomics.wait during a call, so only another thread can see that a call
// takes too long. `progress`: Int32 [call number, kind index, armed], then a
// Float64 start time (ms, on the clock of process.hrtime). The channel's
// control array comes by message whenever the instance's worker changes.
const WATCHDOG = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { progress, boundMs, kinds, channelUrl } = workerData;
const p = new Int32Array(progress, 0, 3);
const startedAt = new Float64Array(progress, 16, 1);
let control = null;
let channel = null;
import(channelUrl).then((m) => { channel = m; });
parentPort.on('message', (m) => { control = m; });
setInterval(() => {
  if (!Atomics.load(p, 2)) return;
  const ms = Number(process.hrtime.bigint()) / 1e6 - startedAt[0];
  if (ms <= boundMs) return;
  let dump = 'stress: WATCHDOG: call ' + Atomics.load(p, 0) + ' (' + kinds[Atomics.load(p, 1)] + ') has run for ' + Math.round(ms) + ' ms\\n';
  if (control && channel) dump += '  ' + channel.describe(channel.views(control).ctl) + '\\n';
  fs.writeSync(2, dump);
  process.kill(process.pid, 'SIGUSR2'); // a diagnostic report, with the main thread's stack (see below)
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 2000);
}, 250).unref();
`;

const KINDS = ['echo', 'host call', 'trap', 'deadline', 'memory limit', 'out of memory status', 'handler past deadline', 'reload', 'worker start fails', 'adapter'];
const [ECHO, HOSTCALL, TRAP, DEADLINE, MEMLIMIT, OOM, SLOWHANDLER, RELOAD, STARTFAIL, ADAPTER] = KINDS.keys();

// How often each kind of call is made, out of 100,000; the rest are
// echoes. A trap or a memory limit makes a new instance in the same worker;
// a deadline, a handler past the deadline and a reload start a new worker,
// which takes about 100 ms, so they are rarer. A worker whose heap is too
// small to start is the host's failure, seen by the monitor thread.
const WEIGHTS = [
  [HOSTCALL, 20000],
  [TRAP, 500],
  [DEADLINE, 40],
  [MEMLIMIT, 200],
  [OOM, 300],
  [SLOWHANDLER, 20],
  [RELOAD, 60],
  [STARTFAIL, 10],
];

export async function stress({ calls = 100000, burners = os.availableParallelism(), boundMs = 10000, adapterEvery = 2000, seed = 1, log = (line) => process.stdout.write(`${line}\n`), watchdog = true } = {}) {
  const random = prng(seed);
  const progress = new SharedArrayBuffer(24);
  const p = new Int32Array(progress, 0, 3);
  const startedAt = new Float64Array(progress, 16, 1);
  let dog = null;
  if (watchdog) {
    // A dump then a diagnostic report: SIGUSR2 makes Node write one, which
    // holds the JavaScript stack of the main thread even in Atomics.wait.
    process.report.reportOnSignal = true;
    process.report.signal = 'SIGUSR2';
    dog = new Worker(WATCHDOG, { eval: true, workerData: { progress, boundMs, kinds: KINDS, channelUrl: new URL('../src/channel.js', import.meta.url).href } });
    dog.unref();
  }
  let seen = null;
  const arm = (n, kind, plugin) => {
    const control = plugin ? channelOf(plugin)?.buffer ?? null : null;
    if (dog && control && control !== seen) {
      seen = control;
      dog.postMessage(control);
    }
    p[0] = n;
    p[1] = kind;
    startedAt[0] = Number(process.hrtime.bigint()) / 1e6;
    Atomics.store(p, 2, 1);
  };
  const disarm = () => Atomics.store(p, 2, 0);

  // No crash loop: the mix makes failures in a row on purpose.
  const crashLoop = { max: Number.MAX_SAFE_INTEGER, windowMs: 1 };
  const ioBytes = ioPlugin();
  const hcBytes = hcPlugin();
  const loadIo = () => loadPlugin(ioBytes, { crashLoop, limits: { maxMemory: 4 << 20 }, onLog: () => {} });
  // A short deadline for the calls that pass it.
  const loadSpinner = () => loadPlugin(ioBytes, { crashLoop, limits: { timeoutMs: 25 }, onLog: () => {} });
  let slowHandler = false;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const loadHc = () => loadPlugin(hcBytes, {
    crashLoop,
    limits: { timeoutMs: 200 },
    hostFunctions: [{
      name: 'kv.get',
      handler: (request) => {
        // The handler of the kind `handler past deadline` outlasts the
        // deadline (CALL-7); the others answer at once.
        if (slowHandler) Atomics.wait(pause, 0, 0, 260);
        return request;
      },
    }],
  });
  let io = null;
  let spinner = null;
  let hc = null;

  const counts = KINDS.map(() => 0);
  const slowest = KINDS.map(() => 0);
  const wrong = [];
  let restarts = 0;
  const expectKind = (what, f, kind) => {
    try {
      f();
      wrong.push(`${what}: expected ${kind}, but the call succeeded`);
    } catch (e) {
      if (!(e instanceof PabiError) || e.kind !== kind) wrong.push(`${what}: expected ${kind}, got ${e && e.kind ? `${e.kind}: ${e.message}` : e}`);
    }
  };
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const began = performance.now();
  const reportEvery = Math.max(1, Math.floor(calls / 10));

  const burning = [];
  try {
    for (let i = 0; i < burners; i++) {
      // Each burner ends by itself once this process is gone (the watchdog
      // kills it with SIGKILL, which skips the finally below).
      burning.push(spawn(process.execPath, ['-e', `for (let i = 0; ; i++) if ((i & 0xfffff) === 0 && process.ppid !== ${process.pid}) process.exit(0);`], { stdio: 'ignore' }));
    }
    io = loadIo();
    spinner = loadSpinner();
    hc = loadHc();
    for (let n = 1; n <= calls; n++) {
      let kind = ECHO;
      if (adapterEvery && n % adapterEvery === 0) {
        kind = ADAPTER;
      } else {
        let roll = random() * 100000;
        for (const [k, w] of WEIGHTS) {
          if (roll < w) { kind = k; break; }
          roll -= w;
        }
      }
      const t0 = performance.now();
      try {
        switch (kind) {
          case ECHO: {
            const input = new Uint8Array(Math.floor(random() * 4096));
            for (let i = 0; i < input.length; i += 97) input[i] = i & 0xff;
            arm(n, kind, io);
            const out = io.call('echo', input);
            if (!same(out, input)) wrong.push(`call ${n} (echo): the output is not the input`);
            break;
          }
          case HOSTCALL: {
            const request = `key-${n}`;
            arm(n, kind, hc);
            const out = hc.call('call', hcInput('kv.get', request));
            const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
            const text = Buffer.from(out.subarray(8)).toString();
            if (view.getInt32(0, true) !== request.length || text !== request) wrong.push(`call ${n} (host call): got ${JSON.stringify(text)}`);
            break;
          }
          case TRAP:
            arm(n, kind, io);
            expectKind(`call ${n} (trap)`, () => io.call('trap'), 'TRAP');
            restarts++;
            break;
          case DEADLINE:
            arm(n, kind, spinner);
            expectKind(`call ${n} (deadline)`, () => spinner.call('spin'), 'TIMEOUT');
            restarts++;
            break;
          case MEMLIMIT:
            arm(n, kind, io);
            expectKind(`call ${n} (memory limit)`, () => io.call('growtrap'), 'MEMORY_LIMIT');
            restarts++;
            break;
          case OOM: {
            // The status OUT_OF_MEMORY after a refused growth: the instance
            // stays (LIFE-5 does not apply to a returned status).
            arm(n, kind, io);
            expectKind(`call ${n} (out of memory status)`, () => io.call('grow'), 'PLUGIN_ERROR');
            break;
          }
          case SLOWHANDLER:
            slowHandler = true;
            arm(n, kind, hc);
            try {
              expectKind(`call ${n} (handler past deadline)`, () => hc.call('call', hcInput('kv.get', 'late')), 'TIMEOUT');
            } finally {
              slowHandler = false;
            }
            restarts++;
            break;
          case RELOAD: {
            // A fresh worker: close one plugin and load it again.
            arm(n, kind, null);
            const which = Math.floor(random() * 3);
            if (which === 0) { io.close(); io = loadIo(); } else if (which === 1) { spinner.close(); spinner = loadSpinner(); } else { hc.close(); hc = loadHc(); }
            restarts++;
            break;
          }
          case STARTFAIL:
            arm(n, kind, null);
            expectKind(`call ${n} (worker start fails)`, () => loadPlugin(ioBytes, { limits: { heapMB: 1 } }), 'HOST_FAILURE');
            break;
          case ADAPTER: {
            arm(n, kind, null);
            const args = [path.join(ROOT, 'hosts/node/bin/pabi-node.js'), path.join(ROOT, 'fixtures/frozen-1.0/rust/text.wasm'), 'reverse', '--input-hex', '61', '--format', 'json'];
            const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: boundMs, killSignal: 'SIGKILL' });
            if (r.error || r.status !== 0 || r.stdout.trim() !== '{"ok":true,"output_hex":"61"}') {
              wrong.push(`call ${n} (adapter): status ${r.status}, signal ${r.signal}, error ${r.error?.message}; stdout ${JSON.stringify(r.stdout)}; stderr ${JSON.stringify(r.stderr)}`);
            }
            break;
          }
          default:
            throw new Error(`unknown kind ${kind}`);
        }
      } catch (e) {
        // A call that should have succeeded, or a failure of another kind
        // than expected, is a wrong result, not the end of the run.
        wrong.push(`call ${n} (${KINDS[kind]}) threw ${e && e.kind ? `${e.kind}: ${e.message}` : e && e.stack ? e.stack : e}`);
      }
      disarm();
      const ms = performance.now() - t0;
      counts[kind]++;
      if (ms > slowest[kind]) slowest[kind] = ms;
      if (ms > boundMs) wrong.push(`call ${n} (${KINDS[kind]}) took ${Math.round(ms)} ms, past the bound of ${boundMs} ms`);
      if (n % reportEvery === 0) log(`stress: ${n} calls, ${restarts} restarts, ${wrong.length} wrong, ${Math.round((performance.now() - began) / 1000)} s`);
      if (wrong.length > 20) break;
    }
  } finally {
    // Even a run that ends early leaves nothing running behind it.
    for (const plugin of [io, spinner, hc]) {
      try {
        plugin?.close();
      } catch {
        // A plugin that cannot close was reported by its calls.
      }
    }
    for (const b of burning) b.kill('SIGKILL');
    await dog?.terminate();
  }
  const made = counts.reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - began) / 1000;
  const worst = Math.max(...slowest);
  const summary = {
    calls: made, restarts, burners, seconds: Number(seconds.toFixed(1)),
    slowestMs: Number(worst.toFixed(1)), slowestKind: KINDS[slowest.indexOf(worst)],
    byKind: Object.fromEntries(KINDS.map((k, i) => [k, { calls: counts[i], slowestMs: Number(slowest[i].toFixed(1)) }])),
    wrong,
  };
  return summary;
}

function option(args, name, fallback) {
  const at = args.indexOf(name);
  if (at === -1) return fallback;
  const v = Number(args[at + 1]);
  if (!Number.isSafeInteger(v) || v < 0) {
    process.stderr.write(`stress: ${name} needs a non-negative integer\n`);
    process.exit(2);
  }
  return v;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const summary = await stress({
    calls: option(args, '--calls', 100000),
    burners: option(args, '--burners', os.availableParallelism()),
    boundMs: option(args, '--bound-ms', 10000),
    adapterEvery: option(args, '--adapter-every', 2000),
    seed: option(args, '--seed', 1),
  });
  console.log(`stress: ${summary.calls} calls, ${summary.restarts} instances ended or replaced, ${summary.burners} CPU burners, ${summary.seconds} s`);
  for (const [k, v] of Object.entries(summary.byKind)) console.log(`  ${k.padEnd(22)} ${String(v.calls).padStart(9)} calls, slowest ${v.slowestMs} ms`);
  console.log(`  slowest call: ${summary.slowestMs} ms (${summary.slowestKind})`);
  for (const w of summary.wrong) console.log(`  WRONG: ${w}`);
  console.log(summary.wrong.length ? 'stress: FAILED' : 'stress: ok');
  process.exitCode = summary.wrong.length ? 1 : 0;
}
