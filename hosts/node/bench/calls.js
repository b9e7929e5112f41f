// Per-call time of the Node host for an echo plugin, against the same
// copies done with raw WebAssembly in this thread and with a bare
// round trip to a worker thread (the signalling the host needs per call,
// without pabi), at 0 B, 64 B, 1 KiB and 64 KiB of input.
//
//   node hosts/node/bench/calls.js [--rounds N] [--ms M]
//
// The variants run in interleaved batches (raw, thread, pabi, raw, ...), so
// that a change of the machine's load or clock affects all of them alike;
// each figure is the median over the rounds of a batch's time per call.

import { Worker, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { loadPlugin } from '../src/index.js';
import { u32, s32, str, vec, section } from '../test/helpers.js';
import { echoPlugin } from './echo-plugin.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : Number(args[at + 1]);
};
const ROUNDS = option('--rounds', 15);
const BATCH_MS = option('--ms', 40);
const SIZES = [0, 64, 1024, 65536];

// --- the plugins, assembled here: Node has no WebAssembly text compiler --

const body = (code) => [...u32(code.length + 2), 0, ...code, 0x0b]; // no locals
const I32 = 0x7f;
const i32 = (v) => [0x41, ...s32(v)];
const localGet = (i) => [0x20, ...u32(i)];
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

// Raw WebAssembly: `echo(len)` copies `len` bytes from IN to OUT with
// memory.copy; the host writes the input at IN and reads OUT back.
const IN = 1024;
const OUT = IN + 65536;
function rawModule() {
  const code = [...i32(OUT), ...i32(IN), ...localGet(0), 0xfc, 10, 0, 0, ...i32(0)];
  return new WebAssembly.Module(new Uint8Array([
    ...HEADER,
    ...section(1, vec([[0x60, 1, I32, 1, I32]])),
    ...section(3, vec([[0]])),
    ...section(5, vec([[0x00, 3]])),
    ...section(7, vec([[...str('memory'), 0x02, 0], [...str('echo'), 0x00, 0]])),
    ...section(10, vec([body(code)])),
  ]));
}

function rawEcho(module) {
  const { exports } = new WebAssembly.Instance(module);
  const bytes = new Uint8Array(exports.memory.buffer);
  return (input) => {
    bytes.set(input, IN);
    exports.echo(input.length);
    return bytes.slice(OUT, OUT + input.length);
  };
}

// The same raw echo in a worker thread, reached the way the host reaches
// its instance: the request posted on a port, the caller blocked in
// Atomics.wait until the worker says it is done, the answer taken with
// receiveMessageOnPort. What this costs over `raw` is the price of running
// plugin code in another thread, which the host pays for its deadline
// (a thread can be terminated wherever it is).
const THREAD_SOURCE = `
  const { workerData, receiveMessageOnPort } = require('node:worker_threads');
  const { module, port, control } = workerData;
  const ctl = new Int32Array(control);
  const { exports } = new WebAssembly.Instance(module);
  const bytes = new Uint8Array(exports.memory.buffer);
  for (;;) {
    while (Atomics.load(ctl, 0) !== 1) Atomics.wait(ctl, 0, 2);
    const input = receiveMessageOnPort(port).message;
    bytes.set(input, ${IN});
    exports.echo(input.length);
    const output = bytes.slice(${OUT}, ${OUT} + input.length);
    port.postMessage(output, [output.buffer]);
    Atomics.store(ctl, 0, 2);
    Atomics.notify(ctl, 0);
  }
`;

function threadEcho(module) {
  const control = new SharedArrayBuffer(4);
  // 1: a request is waiting; 2: its answer is (and no request).
  const ctl = new Int32Array(control);
  ctl[0] = 2;
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { module, port: port2, control }, transferList: [port2] });
  worker.unref();
  const echo = (input) => {
    port1.postMessage(input);
    Atomics.store(ctl, 0, 1);
    Atomics.notify(ctl, 0);
    while (Atomics.load(ctl, 0) === 1) Atomics.wait(ctl, 0, 1);
    return receiveMessageOnPort(port1).message;
  };
  return { echo, stop: () => worker.terminate() };
}

// --- measurement ---------------------------------------------------------

// Calls `fn(input)` `n` times; nanoseconds per call.
function batch(fn, input, n) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(input);
  return Number(process.hrtime.bigint() - start) / n;
}

// How many calls make a batch of about BATCH_MS.
function calibrate(fn, input) {
  let n = 1;
  for (;;) {
    const ns = batch(fn, input, n) * n;
    if (ns > BATCH_MS * 1e6 / 4 || n >= 1 << 24) return Math.max(1, Math.round(n * BATCH_MS * 1e6 / ns));
    n *= 2;
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function check(name, fn, input) {
  const out = fn(input);
  if (out.length !== input.length || !out.every((b, i) => b === input[i])) throw new Error(`${name} did not echo ${input.length} bytes`);
}

const module = rawModule();
const plugin = loadPlugin(echoPlugin());
const thread = threadEcho(module);
const variants = {
  raw: rawEcho(module),
  thread: thread.echo,
  pabi: (input) => plugin.call('echo', input),
};

const rows = [];
for (const size of SIZES) {
  const input = new Uint8Array(size).map((_, i) => i * 7 + 1);
  const counts = {};
  const times = {};
  for (const [name, fn] of Object.entries(variants)) {
    check(name, fn, input);
    counts[name] = calibrate(fn, input);
    times[name] = [];
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(variants)) times[name].push(batch(fn, input, counts[name]));
  }
  const m = Object.fromEntries(Object.entries(times).map(([name, xs]) => [name, median(xs)]));
  rows.push({ size, ...m });
}
plugin.close();
await thread.stop();

const sizeText = (n) => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);
const us = (ns) => (ns / 1000).toFixed(ns < 10000 ? 2 : 1);
console.log(`node ${process.version}, ${ROUNDS} rounds of about ${BATCH_MS} ms per variant and size; medians per call`);
console.log('');
console.log('| input | raw wasm | raw wasm in a worker | pabi-node | pabi-node / raw | pabi-node / worker |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${sizeText(r.size)} | ${us(r.raw)} µs | ${us(r.thread)} µs | ${us(r.pabi)} µs | ${(r.pabi / r.raw).toFixed(0)}× | ${(r.pabi / r.thread).toFixed(2)}× |`);
}
