// The limits of the adversarial round: log cap (LIM-11), compile budget
// (LIM-12), input cap (LIM-13), table cap (LIM-8), the worker's heap, the
// host's own export, and the crash-loop reset (LIFE-7).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { loadPlugin, Plugin, PabiError, Oversized } from '../src/index.js';
import { buildPlugin, ioPlugin, op, IMP } from './helpers.js';
import { bounds, MainEnd } from '../src/channel.js';
import { channelOf } from '../src/plugin.js';

const failure = (fn) => {
  try {
    fn();
  } catch (e) {
    if (e instanceof PabiError) return e;
    throw e;
  }
  assert.fail('expected a PabiError');
};
const localSet = (i) => [0x21, i];
const localTee = (i) => [0x22, i];
const outputPair = (a, b) => [op.i32(1024), a, op.store, op.i32(1028), b, op.store, op.i32(1024), op.i32(8), op.call(IMP.output_write), op.drop];

// flood: logs 64 KiB records at info until log returns non-zero; outputs
// the count accepted and the last code.
function logPlugin() {
  return buildPlugin({
    functions: [{
      export: 'pabi_fn_flood',
      locals: 2,
      code: [
        [0x02, 0x40, 0x03, 0x40], // block, loop
        op.i32(2), op.i32(0), op.i32(65536), op.call(IMP.log), localTee(2), [0x0d, 0x01], // br_if out
        op.localGet(1), op.i32(1), op.add, localSet(1), [0x0c, 0x00], // br loop
        [0x0b, 0x0b],
        outputPair(op.localGet(1), op.localGet(2)),
        op.i32(0),
      ],
    }],
  });
}

test('log text past the cap of a call is dropped record by record with E_LIMIT, and reported once (LIM-11)', () => {
  const records = [];
  const host = [];
  const p = loadPlugin(logPlugin(), { onLog: (level, text) => records.push([level, text.length]), onHostLog: (t) => host.push(t) });
  try {
    for (let round = 0; round < 2; round++) {
      records.length = 0;
      host.length = 0;
      const out = Buffer.from(p.call('flood'));
      // 16 records of 64 KiB are exactly 1 MiB; the 17th would pass the cap.
      assert.equal(out.readUInt32LE(0), 16);
      assert.equal(out.readInt32LE(4), -1);
      assert.equal(records.length, 16);
      assert.deepEqual(records[0], [2, 65536]);
      assert.equal(host.length, 1);
      assert.match(host[0], /1 log records and 65536 bytes/);
    }
  } finally {
    p.close();
  }
});

test('the log cap is a host limit: a smaller one drops sooner (LIM-11, LIM-10)', () => {
  const p = loadPlugin(logPlugin(), { limits: { maxLog: 65536 * 3 }, onLog: () => {}, onHostLog: () => {} });
  try {
    assert.equal(Buffer.from(p.call('flood')).readUInt32LE(0), 3);
  } finally {
    p.close();
  }
});

// fd_write(fd from input, iovec at 100 = {0, 8}, 1, nwritten at 200) of
// "ab\ncd\nef"; outputs errno and nwritten.
function stdioPlugin() {
  return buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log', { module: 'wasi_snapshot_preview1', name: 'fd_write', type: 6 }],
    metadata: { abi: '1.0', name: 'stdio', version: '1.0.0', profile: 'wasi', functions: [{ name: 'f' }], capabilities: [] },
    data: [[0, [...Buffer.from('ab\ncd\nef')]], [100, [0, 0, 0, 0, 8, 0, 0, 0]]],
    functions: [{
      export: 'pabi_fn_f',
      code: [
        op.i32(300), op.i32(0), op.i32(4), op.call(IMP.input_read), op.drop,
        outputPair([op.i32(300), op.load, op.i32(100), op.i32(1), op.i32(200), op.call(4)], [op.i32(200), op.load]),
        op.i32(0),
      ],
    }],
  });
}
const le = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };

test('standard output is logged at info and standard error at warn, one record per line; the last partial line at the end of the call (WASI-8)', () => {
  const records = [];
  const p = loadPlugin(stdioPlugin(), { onLog: (level, text) => records.push([level, text]) });
  try {
    const out = Buffer.from(p.call('f', le(1)));
    assert.equal(out.readUInt32LE(0), 0);
    assert.equal(out.readUInt32LE(4), 8);
    assert.deepEqual(records, [[2, 'ab'], [2, 'cd'], [2, 'ef']]);
    records.length = 0;
    p.call('f', le(2));
    assert.deepEqual(records, [[1, 'ab'], [1, 'cd'], [1, 'ef']]);
  } finally {
    p.close();
  }
});

test('standard output past the log cap is dropped, and fd_write still reports every byte (LIM-11)', () => {
  const records = [];
  const host = [];
  const p = loadPlugin(stdioPlugin(), { limits: { maxLog: 4 }, onLog: (level, text) => records.push(text), onHostLog: (t) => host.push(t) });
  try {
    const out = Buffer.from(p.call('f', le(1)));
    assert.equal(out.readUInt32LE(4), 8);
    assert.deepEqual(records, ['ab', 'c']);
    assert.match(host[0], /0 log records and 4 bytes/);
  } finally {
    p.close();
  }
});

test('a module past the compile budget is MODULE_LIMIT naming the cap and its value, before compiling (LIM-12)', () => {
  const bytes = ioPlugin();
  let e = failure(() => loadPlugin(bytes, { limits: { maxModuleSize: 100 } }));
  assert.equal(e.kind, 'MODULE_LIMIT');
  assert.match(e.message, new RegExp(`${bytes.length} bytes, more than the cap of 100`));
  e = failure(() => loadPlugin(bytes, { limits: { maxFunctions: 3 } }));
  assert.equal(e.kind, 'MODULE_LIMIT');
  assert.match(e.message, /defines 13 functions, more than the cap of 3/);
  e = failure(() => loadPlugin(bytes, { limits: { maxFunctionSize: 10 } }));
  assert.equal(e.kind, 'MODULE_LIMIT');
  assert.match(e.message, /bytes, more than the cap of 10 bytes/);
  loadPlugin(bytes).close();
});

test('an input, state or configuration past LIM-13 is INPUT_LIMIT before any plugin code runs; the instance stays live', () => {
  const p = loadPlugin(ioPlugin());
  try {
    assert.equal(Buffer.from(p.call('count')).readUInt32LE(0), 1);
    const e = failure(() => p.call('count', new Oversized(2 ** 31)));
    assert.equal(e.kind, 'INPUT_LIMIT');
    assert.match(e.message, /2147483648 bytes/);
    assert.equal(Buffer.from(p.call('count')).readUInt32LE(0), 2);
  } finally {
    p.close();
  }
  const small = loadPlugin(ioPlugin(), { limits: { maxInput: 4 } });
  try {
    assert.equal(failure(() => small.call('echo', new Uint8Array(5))).kind, 'INPUT_LIMIT');
    assert.deepEqual([...small.call('echo', new Uint8Array([1, 2, 3, 4]))], [1, 2, 3, 4]);
  } finally {
    small.close();
  }
  assert.equal(failure(() => loadPlugin(ioPlugin(), { config: new Oversized(2 ** 31) })).kind, 'INPUT_LIMIT');
});

// grow: table.grow(ref.null func, n from input) on table 0; outputs the
// result and table.size.
function tablePlugin(tables, extra = {}) {
  return buildPlugin({
    tables,
    functions: [{
      export: 'pabi_fn_grow',
      code: [
        op.i32(0), op.i32(0), op.i32(4), op.call(IMP.input_read), op.drop,
        outputPair([[0xd0, 0x70], op.i32(0), op.load, [0xfc, 0x0f, 0x00]], [[0xfc, 0x10, 0x00]]),
        op.i32(0),
      ],
    }],
    ...extra,
  });
}

test('table.grow past the table cap returns -1 and leaves the table as it was (LIM-8)', () => {
  const p = loadPlugin(tablePlugin([{ min: 10 }]));
  try {
    let out = Buffer.from(p.call('grow', le(9990)));
    assert.deepEqual([out.readInt32LE(0), out.readUInt32LE(4)], [10, 10000]);
    out = Buffer.from(p.call('grow', le(1)));
    assert.deepEqual([out.readInt32LE(0), out.readUInt32LE(4)], [-1, 10000]);
  } finally {
    p.close();
  }
  // The plugin's own smaller maximum still holds.
  const own = loadPlugin(tablePlugin([{ min: 1, max: 5 }]));
  try {
    const out = Buffer.from(own.call('grow', le(5)));
    assert.deepEqual([out.readInt32LE(0), out.readUInt32LE(4)], [-1, 1]);
  } finally {
    own.close();
  }
});

test('an initial table past the cap, or tables past the total cap, fail the load with MEMORY_LIMIT (LIM-8)', () => {
  assert.equal(failure(() => loadPlugin(tablePlugin([{ min: 10001 }]))).kind, 'MEMORY_LIMIT');
  const many = Array.from({ length: 1001 }, () => ({ min: 0 }));
  const e = failure(() => loadPlugin(tablePlugin(many)));
  assert.equal(e.kind, 'MEMORY_LIMIT');
  assert.match(e.message, /1001 tables may grow to 10010000 elements/);
});

// Node stops a worker whose heap is exhausted without running any more of
// its code; the main thread, blocked in the call, learns it through the
// monitor thread, the workers' parent (monitor.js). Exhausting a heap on
// purpose in a call can also abort the whole process inside Node's teardown
// of the worker, so the call's half is checked with a marked worker (the
// next test), and the monitor's half with a worker whose heap is too small
// to start at all.
test('a worker that cannot start is HOST_FAILURE as soon as it stops, not at the start bound', { timeout: 20000 }, () => {
  // The bound is longer than the test's timeout: only the monitor's report
  // can end the load in time.
  const saved = bounds.workerStartMs;
  bounds.workerStartMs = 60000;
  try {
    const e = failure(() => loadPlugin(ioPlugin(), { limits: { heapMB: 1 } }));
    assert.equal(e.kind, 'HOST_FAILURE');
    assert.match(e.message, /the worker thread stopped before it started \(channel state GONE \(the worker died: heap exhausted\)/);
  } finally {
    bounds.workerStartMs = saved;
  }
});

test('a worker\'s death is seen even when it comes between the main thread\'s check and its wait', { timeout: 20000 }, () => {
  const saved = bounds.workerStartMs;
  const died = MainEnd.prototype.died;
  bounds.workerStartMs = 10000;
  try {
    const p = new Plugin(ioPlugin(), { limits: { heapMB: 1 } });
    // Every check of DIED comes too early, as when the worker dies just
    // after the check and before the wait: the wait must still end.
    MainEnd.prototype.died = () => false;
    const e = failure(() => p.load());
    assert.equal(e.kind, 'HOST_FAILURE');
    assert.match(e.message, /the worker thread stopped before it started/);
  } finally {
    bounds.workerStartMs = saved;
    MainEnd.prototype.died = died;
  }
});

test('a call whose worker stopped on its own is MEMORY_LIMIT, and the next call runs on a fresh instance', { timeout: 20000 }, async () => {
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 60000 } });
  try {
    // Another thread marks the worker dead while the call spins, as the
    // monitor does when a worker's heap is exhausted.
    const marker = new Worker(`
      const { workerData } = require('node:worker_threads');
      const ctl = new Int32Array(workerData);
      setTimeout(() => { Atomics.store(ctl, 1, 1); Atomics.notify(ctl, 0); }, 200);
    `, { eval: true, workerData: channelOf(p).buffer });
    await new Promise((r) => marker.once('online', r));
    // The deadline is far past the test's timeout: only the mark ends the call.
    const e = failure(() => p.call('spin'));
    assert.equal(e.kind, 'MEMORY_LIMIT');
    assert.match(e.message, /heap/);
    assert.equal(Buffer.from(p.call('count')).readUInt32LE(0), 1);
  } finally {
    p.close();
  }
});

test('a plugin may export the name the host uses for its own export; growth refusals are still seen (EXP-9, LIM-2)', () => {
  const bytes = ioPlugin({ exports: [['\u0000pabi-node:growth-refused', 0x03, 0]] });
  const p = loadPlugin(bytes, { limits: { maxMemory: 2 * 1024 * 1024 } });
  try {
    assert.equal(failure(() => p.call('growtrap')).kind, 'MEMORY_LIMIT');
    assert.equal(failure(() => p.call('grow')).status, 4);
  } finally {
    p.close();
  }
});

test('a plugin with 100,000 exports, the most V8 accepts, loads with the host\'s rewrite (EXP-9)', () => {
  const extra = Array.from({ length: 100000 - 14 }, (_, i) => [`x${i}`, 0x00, 4]);
  const p = loadPlugin(ioPlugin({ exports: extra }), { limits: { maxMemory: 2 * 1024 * 1024 } });
  try {
    assert.deepEqual([...p.call('echo', new Uint8Array([7]))], [7]);
    assert.equal(failure(() => p.call('growtrap')).kind, 'MEMORY_LIMIT');
  } finally {
    p.close();
  }
});

test('a call that returns a status resets the crash-loop count (LIFE-7)', () => {
  const p = loadPlugin(ioPlugin());
  try {
    for (let i = 0; i < 12; i++) {
      if (i % 2 === 0) assert.equal(failure(() => p.call('trap')).kind, 'TRAP');
      else assert.deepEqual([...p.call('echo', new Uint8Array([i]))], [i]);
    }
    for (let i = 0; i < 5; i++) assert.equal(failure(() => p.call('trap')).kind, 'TRAP');
    assert.equal(failure(() => p.call('echo')).kind, 'CRASH_LOOP');
  } finally {
    p.close();
  }
});

test('a timed-out worker stops: closed() resolves once its thread has gone', { timeout: 20000 }, async () => {
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 100 } });
  assert.equal(failure(() => p.call('spin')).kind, 'TIMEOUT');
  p.close();
  await p.closed();
  assert.equal(p.describeChannels(), 'every stopped worker has gone');
});

test('ten million zero-length writes append nothing and cost no memory per write (HOST-5, MEM-5)', () => {
  const p = loadPlugin(buildPlugin({
    functions: [{
      export: 'pabi_fn_f',
      locals: 1,
      code: [
        [0x03, 0x40],
        op.i32(0), op.i32(0), op.call(IMP.output_write), op.drop,
        op.localGet(1), op.i32(1), op.add, localTee(1), op.i32(10000000), [0x49], [0x0d, 0x00], // i32.lt_u; br_if
        [0x0b],
        op.i32(0),
      ],
    }],
  }), { limits: { timeoutMs: 30000, heapMB: 16 } });
  try {
    assert.equal(p.call('f').length, 0);
  } finally {
    p.close();
  }
});

test('a module that the host\'s rewrite would take past V8\'s body-size limit is MODULE_LIMIT, not a crash (LIM-12)', () => {
  // With 130 functions the helper's index needs two LEB128 bytes, so each
  // 2-byte `memory.grow` becomes a 3-byte call: a body of V8's maximum
  // size (7,654,321 bytes) with a million growth sites no longer fits.
  const V8_MAX_BODY = 7654321;
  const site = [0x41, 0x00, 0x40, 0x00, 0x1a]; // i32.const 0; memory.grow; drop
  const tail = [0x41, 0x00]; // i32.const 0 (the body's end is added by buildPlugin)
  const fill = V8_MAX_BODY - 1 - 1 - tail.length; // locals byte, end byte
  const code = new Array(fill);
  for (let i = 0; i < fill; i++) code[i] = i < fill - (fill % 5) ? site[i % 5] : 0x01; // nop to pad
  const tiny = Array.from({ length: 129 }, () => ({ code: [op.i32(0)] }));
  const bytes = buildPlugin({ functions: [...tiny, { export: 'pabi_fn_f', code: [code, tail] }] });
  const e = failure(() => loadPlugin(bytes, { limits: { maxFunctionSize: 8 * 1024 * 1024 } }));
  assert.equal(e.kind, 'MODULE_LIMIT');
  assert.match(e.message, /rewrite/);
});

test('plugin text is escaped for a terminal: C0, DEL, C1 and line separators (SEC-3)', async () => {
  const { escapeText } = await import('../src/index.js');
  assert.equal(escapeText('a\x1b[2Jb\nc'), 'a\\u001b[2Jb\\nc');
  assert.equal(escapeText('x\u007f\u009b2J\u2028y'), 'x\\u007f\\u009b2J\\u2028y');
  assert.equal(escapeText('plain — ünïcode'), 'plain — ünïcode');
});

// LIM-2 with two maxima: the plugin's own of 4 pages and the host's cap of
// 32 (2 MiB). probe grows by its u32 input and outputs what memory.grow
// returned; both grows past both maxima and traps; own grows past the
// plugin's maximum only and traps.
function growCapsPlugin() {
  const growInput = [op.i32(0), op.i32(0), op.i32(4), op.call(IMP.input_read), op.drop, op.i32(0), op.load, op.memoryGrow];
  return buildPlugin({
    sections: { 5: [1, 0x01, 1, 4] },
    functions: [
      { export: 'pabi_fn_probe', code: [op.i32(1024), growInput, op.store, op.i32(1024), op.i32(4), op.call(IMP.output_write), op.drop, op.i32(0)] },
      { export: 'pabi_fn_both', code: [op.i32(100), op.memoryGrow, op.drop, op.unreachable, op.i32(0)] },
      { export: 'pabi_fn_own', code: [op.i32(10), op.memoryGrow, op.drop, op.unreachable, op.i32(0)] },
    ],
  });
}

test('a growth past both the cap and the plugin\'s maximum is refused by the host (MEMORY_LIMIT after it); past the plugin\'s maximum alone, a trap is TRAP (LIM-2)', () => {
  const p = loadPlugin(growCapsPlugin(), { limits: { maxMemory: 2 * 1024 * 1024 } });
  try {
    assert.equal(Buffer.from(p.call('probe', le(100))).readInt32LE(0), -1);
    assert.equal(Buffer.from(p.call('probe', le(10))).readInt32LE(0), -1);
    assert.equal(Buffer.from(p.call('probe', le(3))).readInt32LE(0), 1);
    assert.equal(failure(() => p.call('both')).kind, 'MEMORY_LIMIT');
    const e = failure(() => p.call('own'));
    assert.equal(e.kind, 'TRAP', e.message);
    assert.equal(e.trap, 'unreachable');
  } finally {
    p.close();
  }
});

test('proc_exit after a refused growth is MEMORY_LIMIT; without one it is TRAP other (LIM-2, WASI-10)', () => {
  const PROC_EXIT = 4;
  const p = loadPlugin(buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log', { module: 'wasi_snapshot_preview1', name: 'proc_exit', type: 7 }],
    metadata: { abi: '1.0', name: 'exit', version: '3.4.5', profile: 'wasi', functions: [{ name: 'growexit' }, { name: 'exit' }], capabilities: [] },
    functions: [
      // What Go's runtime does when memory runs out: grow until refused, then proc_exit(2).
      { export: 'pabi_fn_growexit', code: [[0x03, 0x40], op.i32(16), op.memoryGrow, op.i32(0), [0x4e], [0x0d, 0x00], [0x0b], op.i32(2), op.call(PROC_EXIT), op.i32(0)] },
      { export: 'pabi_fn_exit', code: [op.i32(3), op.call(PROC_EXIT), op.i32(0)] },
    ],
  }), { limits: { maxMemory: 2 * 1024 * 1024 } });
  try {
    assert.equal(failure(() => p.call('growexit')).kind, 'MEMORY_LIMIT');
    // The flag is per call: the next proc_exit, on a fresh instance, is TRAP.
    const e = failure(() => p.call('exit'));
    assert.equal(e.kind, 'TRAP', e.message);
    assert.equal(e.trap, 'other');
  } finally {
    p.close();
  }
});

test('a trap after a table.grow refused by the table cap is TRAP, not MEMORY_LIMIT (LIM-8, LIM-2)', () => {
  // growtrap: a memory.grow within the cap (so that the host watches
  // growths in this module), then table.grow(ref.null, 20000) past the
  // table cap of 10,000, then unreachable.
  const p = loadPlugin(tablePlugin([{ min: 10 }], {
    functions: [{ export: 'pabi_fn_growtrap', code: [op.i32(1), op.memoryGrow, op.drop, [0xd0, 0x70], op.i32(20000), [0xfc, 15, 0], op.drop, op.unreachable, op.i32(0)] }],
  }));
  try {
    const e = failure(() => p.call('growtrap'));
    assert.equal(e.kind, 'TRAP', e.message);
    assert.equal(e.trap, 'unreachable');
  } finally {
    p.close();
  }
});
