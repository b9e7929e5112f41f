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
