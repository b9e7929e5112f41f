import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { loadPlugin, PabiError, checkPlugin } from '../src/index.js';
import { WASI_TYPES, WASI_BASELINE, checkGuestPaths } from '../../shared/check.js';
import { makeWasi } from '../../shared/wasi.js';
import { buildPlugin, op, IMP } from './helpers.js';

const CLOCK = 4; // function index of the clock_time_get import below

// f: clock_time_get(1, 0, ptr from input) stored at 0 (errno) and the time
// at 8; outputs errno (u32) and time (u64).
function clockPlugin(capabilities = []) {
  return buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log', { module: 'wasi_snapshot_preview1', name: 'clock_time_get', type: 5 }],
    metadata: { abi: '1.0', name: 'clock', version: '1.0.0', profile: 'wasi', functions: [{ name: 'f' }], capabilities },
    functions: [{
      export: 'pabi_fn_f',
      code: [op.i32(16), op.i32(0), op.i32(4), op.call(IMP.input_read), op.drop,
        op.i32(0), op.i32(1), [0x42, 0x00], op.i32(16), op.load, op.call(CLOCK), op.store,
        op.i32(0), op.i32(16), op.call(IMP.output_write), op.drop, op.i32(0)],
    }],
  });
}
const le = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };

test('without the clock capability the clock is virtual and starts at one second (WASI-6)', () => {
  const p = loadPlugin(clockPlugin());
  try {
    const out = Buffer.from(p.call('f', le(8)));
    assert.equal(out.readUInt32LE(0), 0);
    assert.equal(out.readBigUInt64LE(8), 1000000000n);
  } finally {
    p.close();
  }
});

test('a WASI pointer outside memory aborts the call with ABI_VIOLATION MEM-3, and the next call runs on a fresh instance (MEM-3)', () => {
  const p = loadPlugin(clockPlugin());
  try {
    assert.throws(() => p.call('f', le(0xfffffff8)), (err) => err instanceof PabiError && err.kind === 'ABI_VIOLATION' && err.clause === 'MEM-3');
    const out = Buffer.from(p.call('f', le(8)));
    assert.equal(out.readUInt32LE(0), 0);
  } finally {
    p.close();
  }
});

test('a WASI pointer misaligned for its type aborts the call (MEM-3)', () => {
  const p = loadPlugin(clockPlugin());
  try {
    // A timestamp is 8-aligned; 12 is inside memory but only 4-aligned.
    assert.throws(() => p.call('f', le(12)), (err) => err instanceof PabiError && err.kind === 'ABI_VIOLATION' && err.clause === 'MEM-3' && /aligned/.test(err.message));
  } finally {
    p.close();
  }
});

test('the clock capability must be allowed before it is granted (WASI-5)', () => {
  assert.throws(() => loadPlugin(clockPlugin(['clock'])), (e) => e instanceof PabiError && e.kind === 'MISSING_CAPABILITY');
  const p = loadPlugin(clockPlugin(['clock']), { allow: ['clock'] });
  try {
    const out = Buffer.from(p.call('f', le(8)));
    assert.ok(out.readBigUInt64LE(8) > 1000000000n * 10n);
  } finally {
    p.close();
  }
});

// clock_time_get(id from input, 0, 8), clock_res_get(id, 16); outputs both
// errnos and both values.
function clockIdsPlugin() {
  return buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log',
      { module: 'wasi_snapshot_preview1', name: 'clock_time_get', type: 5 },
      { module: 'wasi_snapshot_preview1', name: 'clock_res_get', type: 1 }],
    metadata: { abi: '1.0', name: 'clocks', version: '1.0.0', profile: 'wasi', functions: [{ name: 'f' }], capabilities: [] },
    functions: [{
      export: 'pabi_fn_f',
      code: [op.i32(100), op.i32(0), op.i32(4), op.call(IMP.input_read), op.drop,
        op.i32(0), op.i32(100), op.load, [0x42, 0x00], op.i32(8), op.call(4), op.store,
        op.i32(4), op.i32(100), op.load, op.i32(16), op.call(5), op.store,
        op.i32(0), op.i32(24), op.call(IMP.output_write), op.drop, op.i32(0)],
    }],
  });
}

test('clock ids 0-3 read the virtual clock with resolution 1; other ids are inval (WASI-9)', () => {
  const p = loadPlugin(clockIdsPlugin());
  try {
    for (const id of [0, 1, 2, 3]) {
      const out = Buffer.from(p.call('f', le(id)));
      assert.deepEqual([out.readUInt32LE(0), out.readUInt32LE(4), out.readBigUInt64LE(8), out.readBigUInt64LE(16)], [0, 0, 1000000000n, 1n]);
    }
    for (const id of [4, 0xffffffff]) {
      const out = Buffer.from(p.call('f', le(id)));
      assert.deepEqual([out.readUInt32LE(0), out.readUInt32LE(4)], [28, 28]);
    }
  } finally {
    p.close();
  }
});

// Three relative timers of `a`, `b` and `c` ns at 1024 (userdata 1, 2, 4);
// poll_oneoff into 2048, count at 4096; outputs errno, count, the events'
// userdata and the clock after.
function pollPlugin(a, b, c) {
  const sub = (userdata, timeout) => {
    const s = Buffer.alloc(48);
    s.writeBigUInt64LE(BigInt(userdata), 0);
    s.writeUInt32LE(1, 16);
    s.writeBigUInt64LE(BigInt(timeout), 24);
    return [...s];
  };
  return buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log',
      { module: 'wasi_snapshot_preview1', name: 'poll_oneoff', type: 6 },
      { module: 'wasi_snapshot_preview1', name: 'clock_time_get', type: 5 }],
    metadata: { abi: '1.0', name: 'poll', version: '1.0.0', profile: 'wasi', functions: [{ name: 'f' }], capabilities: [] },
    data: [[1024, [...sub(1, a), ...sub(2, b), ...sub(4, c)]]],
    functions: [{
      export: 'pabi_fn_f',
      code: [op.i32(0), op.i32(1024), op.i32(2048), op.i32(3), op.i32(4096), op.call(4), op.store,
        op.i32(4), op.i32(4096), op.load, op.store,
        op.i32(1), [0x42, 0x00], op.i32(8), op.call(5), op.drop,
        op.i32(0), op.i32(16), op.call(IMP.output_write), op.drop,
        op.i32(2048), op.i32(96), op.call(IMP.output_write), op.drop, op.i32(0)],
    }],
  });
}

test('poll_oneoff gives an event to every timer due at the earliest timeout (WASI-9)', () => {
  const p = loadPlugin(pollPlugin(5000000, 5000000, 10000000000));
  try {
    const out = Buffer.from(p.call('f'));
    assert.equal(out.readUInt32LE(0), 0);
    assert.equal(out.readUInt32LE(4), 2);
    assert.equal(out.readBigUInt64LE(8), 1005000000n);
    assert.deepEqual([out.readBigUInt64LE(16), out.readBigUInt64LE(48)], [1n, 2n]);
  } finally {
    p.close();
  }
  const q = loadPlugin(pollPlugin(7, 3, 5));
  try {
    const out = Buffer.from(q.call('f'));
    assert.equal(out.readUInt32LE(4), 1);
    assert.equal(out.readBigUInt64LE(8), 1000000003n);
    assert.equal(out.readBigUInt64LE(16), 2n);
  } finally {
    q.close();
  }
});

test('proc_raise returns nosys and the call goes on (WASI-10)', () => {
  const p = loadPlugin(buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log', { module: 'wasi_snapshot_preview1', name: 'proc_raise', type: 2 }],
    metadata: { abi: '1.0', name: 'raise', version: '1.0.0', profile: 'wasi', functions: [{ name: 'f' }], capabilities: [] },
    functions: [{ export: 'pabi_fn_f', code: [op.i32(0), op.i32(6), op.call(4), op.store, op.i32(0), op.i32(4), op.call(IMP.output_write), op.drop, op.i32(0)] }],
  }));
  try {
    assert.equal(Buffer.from(p.call('f')).readUInt32LE(0), 52);
  } finally {
    p.close();
  }
});

const wasiMeta = (capabilities = [], name = 'w') => ({ abi: '1.0', name, version: '3.4.5', profile: 'wasi', functions: [{ name: 'f' }], capabilities });
const failure = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PabiError, `expected a PabiError, got ${e}`);
    return e;
  }
  assert.fail('expected a PabiError');
};
// A plugin importing one wasi_snapshot_preview1 function of type `type`
// (a type index of helpers.js), and calling nothing.
const importing = (name, type, capabilities = [], extra = {}) => buildPlugin({
  imports: ['input_read', 'output_write', 'error_write', 'log', { module: 'wasi_snapshot_preview1', name, type }],
  metadata: wasiMeta(capabilities),
  functions: [{ export: 'pabi_fn_f', code: [op.i32(0)] }],
  ...extra,
});

test('a wasi_snapshot_preview1 import without preview1\'s type is INVALID_MODULE citing WASI-11, naming it', () => {
  // clock_time_get is (i32, i64, i32) -> i32; proc_exit has no result.
  for (const [name, type] of [['clock_time_get', 0], ['proc_exit', 2], ['fd_write', 0], ['sched_yield', 3]]) {
    const e = failure(() => checkPlugin(importing(name, type)));
    assert.equal(e.kind, 'INVALID_MODULE', name);
    assert.equal(e.clause, 'WASI-11', `${name}: ${e.message}`);
    assert.match(e.message, new RegExp(`wasi_snapshot_preview1\\.${name}`));
  }
  for (const [name, type] of [['clock_time_get', 5], ['proc_exit', 7], ['fd_write', 6], ['sched_yield', 9]]) {
    checkPlugin(importing(name, type));
  }
});

test('the WASI-11 table of this host is the one of abi.md, and the baseline is what wasi.js implements', () => {
  const spec = fs.readFileSync(new URL('../../../spec/abi.md', import.meta.url), 'utf8');
  const from = spec.indexOf('**[WASI-11]**');
  const section = spec.slice(from, spec.indexOf('\n## ', from));
  // Columns: function, parameters, results, Since.
  const rows = [...section.matchAll(/^ {2}\| `(\w+)` \| ([^|]*) \| ([^|]*) \| [^|]* \|$/gm)];
  const list = (cell) => (cell.trim() === '—' ? [] : cell.split(',').map((t) => t.trim()));
  const table = Object.fromEntries(rows.map(([, name, params, results]) => [name, { params: list(params), results: list(results) }]));
  assert.equal(Object.keys(table).length, 46);
  assert.deepEqual(WASI_TYPES, table);
  const served = Object.keys(makeWasi({ memory: () => null, capabilities: [], write: () => {}, entropy: () => {} }).imports).sort();
  assert.deepEqual(served, [...WASI_BASELINE].sort());
  for (const name of WASI_BASELINE) assert.ok(name in table, name);
});

test('a preview1 function outside the baseline, allowed by WASI-4 but not implemented here, is UNSUPPORTED naming it (WASI-2, HOST-1)', () => {
  // path_open with the fs: capability WASI-4 asks for; the host does not
  // allow fs:, but UNSUPPORTED comes before MISSING_CAPABILITY.
  const bytes = importing('path_open', 8, ['fs:/data:ro']);
  let e = failure(() => checkPlugin(bytes));
  assert.equal(e.kind, 'UNSUPPORTED', e.message);
  assert.match(e.message, /wasi_snapshot_preview1\.path_open/);
  // INVALID_MODULE comes before it: a mistyped import of the same function,
  // a reserved export, no fs: capability at all.
  e = failure(() => checkPlugin(importing('path_open', 0, ['fs:/data:ro'])));
  assert.equal(e.clause, 'WASI-11', e.message);
  e = failure(() => checkPlugin(importing('path_open', 8, ['fs:/data:ro'], { exports: [['pabi_other', 0, 4]] })));
  assert.equal(e.kind, 'INVALID_MODULE', e.message);
  assert.equal(e.clause, 'EXP-2');
  e = failure(() => checkPlugin(importing('path_open', 8)));
  assert.equal(e.clause, 'WASI-4', e.message);
  // A socket function is never allowed (WASI-4), whatever its type.
  e = failure(() => checkPlugin(importing('sock_shutdown', 1)));
  assert.equal(e.clause, 'WASI-4', e.message);
});

test('fs: guest paths are normal and do not overlap (WASI-3)', () => {
  for (const good of [['fs:/:ro'], ['fs:/data:ro', 'fs:/database:rw'], ['fs:/a/b:ro', 'fs:/a/c:rw'], ['fs:/data..x:ro'], ['clock', 'fs:/data:ro']]) {
    checkGuestPaths(good);
  }
  for (const bad of [['fs:/data/:ro'], ['fs:/a//b:ro'], ['fs:/data/../etc:ro'], ['fs:/./data:ro'], ['fs:/data:ro', 'fs:/data:rw'],
    ['fs:/data:rw', 'fs:/data/keys:ro'], ['fs:/data/keys:ro', 'fs:/data:rw'], ['fs:/:ro', 'fs:/data:rw']]) {
    const e = failure(() => checkGuestPaths(bad));
    assert.equal(e.kind, 'INVALID_MODULE', bad.join());
    assert.equal(e.clause, 'WASI-3', `${bad.join()}: ${e.message}`);
  }
  // At load, before the capabilities are compared with what the host
  // allows: INVALID_MODULE, not MISSING_CAPABILITY (HOST-1).
  const plugin = (capabilities) => buildPlugin({ metadata: wasiMeta(capabilities), functions: [{ export: 'pabi_fn_f', code: [op.i32(0)] }] });
  const e = failure(() => checkPlugin(plugin(['fs:/data:rw', 'fs:/data/keys:ro'])));
  assert.equal(e.clause, 'WASI-3', e.message);
  assert.equal(failure(() => checkPlugin(plugin(['fs:/:ro']))).kind, 'MISSING_CAPABILITY');
});
