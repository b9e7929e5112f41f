import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPlugin, PabiError } from '../src/index.js';
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
