// The browser side of calls.js: per-call time of the browser host for the
// echo plugin, against the same copies with raw WebAssembly in the page
// and with a bare round trip to a Web Worker (the signalling the host
// needs per call, without pabi), measured as hosts/node/bench/calls.js
// measures Node's: interleaved batches, the median over the rounds of a
// batch's time per call. A page's calls are asynchronous, so each call of
// a batch is awaited before the next starts.

import { loadPlugin } from '../src/index.js';

const IN = 1024;
const OUT = IN + 65536;

// Raw WebAssembly: `echo(len)` copies `len` bytes from IN to OUT with
// memory.copy; the page writes the input at IN and reads OUT back.
function rawEcho(module) {
  const { exports } = new WebAssembly.Instance(module);
  const bytes = new Uint8Array(exports.memory.buffer);
  return async (input) => {
    bytes.set(input, IN);
    exports.echo(input.length);
    return bytes.slice(OUT, OUT + input.length);
  };
}

// The same raw echo in a Web Worker, reached as the host reaches its
// instance: the request posted, the answer a message event.
const WORKER_SOURCE = `
  let bytes, exports;
  onmessage = (e) => {
    if (e.data.module) {
      exports = new WebAssembly.Instance(e.data.module).exports;
      bytes = new Uint8Array(exports.memory.buffer);
      postMessage('ready');
      return;
    }
    const input = e.data;
    bytes.set(input, ${IN});
    exports.echo(input.length);
    const output = bytes.slice(${OUT}, ${OUT} + input.length);
    postMessage(output, [output.buffer]);
  };
`;

async function workerEcho(module) {
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
  const worker = new Worker(url);
  let pending = null;
  worker.onmessage = (e) => pending(e.data);
  await new Promise((resolve) => { pending = resolve; worker.postMessage({ module }); });
  const echo = (input) => new Promise((resolve) => { pending = resolve; worker.postMessage(input); });
  return { echo, stop: () => worker.terminate() };
}

// Calls `fn(input)` `n` times, one after another; nanoseconds per call.
async function batch(fn, input, n) {
  const start = performance.now();
  for (let i = 0; i < n; i++) await fn(input);
  return ((performance.now() - start) * 1e6) / n;
}

async function calibrate(fn, input, batchMs) {
  let n = 1;
  for (;;) {
    const ns = (await batch(fn, input, n)) * n;
    if (ns > (batchMs * 1e6) / 4 || n >= 1 << 24) return Math.max(1, Math.round((n * batchMs * 1e6) / ns));
    n *= 2;
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * Runs the bench; resolves with one row per input size, times in ns.
 * @param {{ plugin: Uint8Array, raw: Uint8Array, rounds: number, batchMs: number, sizes: number[] }} o
 */
export async function bench({ plugin: pluginBytes, raw, rounds, batchMs, sizes }) {
  const module = await WebAssembly.compile(raw);
  const plugin = await loadPlugin(pluginBytes);
  const worker = await workerEcho(module);
  const variants = { raw: rawEcho(module), worker: worker.echo, pabi: (input) => plugin.call('echo', input) };
  const rows = [];
  for (const size of sizes) {
    const input = new Uint8Array(size).map((_, i) => i * 7 + 1);
    const counts = {};
    const times = {};
    for (const [name, fn] of Object.entries(variants)) {
      const out = await fn(input);
      if (out.length !== input.length || !out.every((b, i) => b === input[i])) throw new Error(`${name} did not echo ${size} bytes`);
      counts[name] = await calibrate(fn, input, batchMs);
      times[name] = [];
    }
    for (let r = 0; r < rounds; r++) {
      for (const [name, fn] of Object.entries(variants)) times[name].push(await batch(fn, input, counts[name]));
    }
    rows.push({ size, ...Object.fromEntries(Object.entries(times).map(([name, xs]) => [name, median(xs)])) });
  }
  await plugin.close();
  worker.stop();
  return rows;
}
