import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPlugin, PabiError, checkPlugin } from '../src/index.js';
import { walkSections, rewriteModule, parseModule, checkFeatures } from '../src/binary.js';
import { buildPlugin, ioPlugin, op, IMP } from './helpers.js';

const u32le = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); return b; };
const hex = (b) => Buffer.from(b).toString('hex');

function failure(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PabiError, `expected a PabiError, got ${e}`);
    return e;
  }
  assert.fail('expected the call to fail');
}

test('the pabi custom section is found by walking sections', () => {
  const sections = walkSections(ioPlugin());
  const pabi = sections.filter((s) => s.id === 0 && s.name === 'pabi');
  assert.equal(pabi.length, 1);
  assert.equal(JSON.parse(Buffer.from(pabi[0].payload).toString()).name, 'test');
});

test('echo returns its input', () => {
  const p = loadPlugin(ioPlugin());
  try {
    assert.equal(hex(p.call('echo', Buffer.from('hello'))), hex(Buffer.from('hello')));
    assert.equal(hex(p.call('echo', new Uint8Array(0))), '');
  } finally {
    p.close();
  }
});

test('statuses map to PLUGIN_ERROR, UNKNOWN_STATUS or success (ERR-1..4)', () => {
  const p = loadPlugin(ioPlugin());
  try {
    assert.equal(hex(p.call('status', u32le(0))), '');
    for (const s of [1, 2, 3, 4, 64, 127]) {
      const e = failure(() => p.call('status', u32le(s)));
      assert.equal(e.kind, 'PLUGIN_ERROR');
      assert.equal(e.status, s);
    }
    for (const s of [5, 63, 128, -1, -2147483648]) {
      const e = failure(() => p.call('status', u32le(s)));
      assert.equal(e.kind, 'UNKNOWN_STATUS');
      assert.equal(e.status, s);
    }
  } finally {
    p.close();
  }
});

test('a non-OK status discards the output and keeps the message (HOST-6, ERR-7)', () => {
  const p = loadPlugin(ioPlugin());
  try {
    const e = failure(() => p.call('fail'));
    assert.equal(e.kind, 'PLUGIN_ERROR');
    assert.equal(e.status, 1);
    assert.equal(Buffer.from(e.pluginMessage).toString(), 'bad input');
  } finally {
    p.close();
  }
});

test('a range whose 32-bit sum wraps is ABI_VIOLATION MEM-3, and the next call gets a fresh instance', () => {
  const p = loadPlugin(ioPlugin());
  try {
    assert.equal(hex(p.call('count')), '01000000');
    const e = failure(() => p.call('wrap'));
    assert.equal(e.kind, 'ABI_VIOLATION');
    assert.equal(e.clause, 'MEM-3');
    assert.equal(hex(p.call('count')), '01000000');
  } finally {
    p.close();
  }
});

test('a trap kills the instance; the next call runs on a fresh one (LIFE-5, LIFE-6)', () => {
  const p = loadPlugin(ioPlugin());
  try {
    p.call('count');
    assert.equal(hex(p.call('count')), '02000000');
    const e = failure(() => p.call('trap'));
    assert.equal(e.kind, 'TRAP');
    assert.equal(e.trap, 'unreachable');
    assert.equal(hex(p.call('count')), '01000000');
  } finally {
    p.close();
  }
});

test('the deadline is armed before every call (LIM-3)', () => {
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 100 } });
  try {
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      const e = failure(() => p.call('spin'));
      assert.equal(e.kind, 'TIMEOUT');
      assert.ok(Date.now() - started < 5000);
    }
    assert.equal(hex(p.call('count')), '01000000');
  } finally {
    p.close();
  }
});

test('a growth past the cap returns -1; a trap after it is MEMORY_LIMIT (LIM-1, LIM-2)', () => {
  const p = loadPlugin(ioPlugin(), { limits: { maxMemory: 2 * 1024 * 1024 } });
  try {
    const e = failure(() => p.call('grow'));
    assert.equal(e.kind, 'PLUGIN_ERROR');
    assert.equal(e.status, 4);
    assert.equal(failure(() => p.call('growtrap')).kind, 'MEMORY_LIMIT');
    assert.equal(failure(() => p.call('trap')).kind, 'TRAP');
  } finally {
    p.close();
  }
});

test('an initial memory larger than the cap fails the load with MEMORY_LIMIT (LIM-1)', () => {
  const e = failure(() => loadPlugin(ioPlugin({ memoryPages: 40 }), { limits: { maxMemory: 2 * 1024 * 1024 } }));
  assert.equal(e.kind, 'MEMORY_LIMIT');
});

test('the instrumented module keeps every index and validates', () => {
  const bytes = ioPlugin();
  const m = parseModule(bytes);
  checkFeatures(bytes, m);
  const { bytes: out } = rewriteModule(bytes, m, { capPages: 32, tableCap: 10000 });
  assert.ok(WebAssembly.validate(out));
  const exports = WebAssembly.Module.exports(new WebAssembly.Module(out)).map((e) => e.name);
  for (const name of WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => e.name)) assert.ok(exports.includes(name));
});

test('output past the cap is OUTPUT_LIMIT (LIM-5)', () => {
  const p = loadPlugin(ioPlugin(), { limits: { maxOutput: 200000 } });
  try {
    assert.equal(failure(() => p.call('flood')).kind, 'OUTPUT_LIMIT');
  } finally {
    p.close();
  }
});

test('error_write keeps 65,536 bytes and returns E_LIMIT (LIM-6)', () => {
  const p = loadPlugin(ioPlugin({ memoryPages: 2 }));
  try {
    const e = failure(() => p.call('bigerror'));
    assert.equal(e.status, 64);
    assert.equal(e.pluginMessage.length, 65536);
  } finally {
    p.close();
  }
});

test('log accepts levels 0-4 and returns E_INVALID otherwise (HOST-7)', () => {
  const records = [];
  const p = loadPlugin(ioPlugin(), { onLog: (level, text) => records.push([level, text]) });
  try {
    assert.equal(hex(p.call('loglevel', u32le(4))), '00000000');
    assert.equal(hex(p.call('loglevel', u32le(5))), 'feffffff');
    assert.equal(hex(p.call('loglevel', u32le(-1))), 'feffffff');
    assert.deepEqual(records, [[4, 'bad input']]);
  } finally {
    p.close();
  }
});

test('stack overflow is TRAP stack_overflow and the host survives (LIM-7)', () => {
  const p = loadPlugin(ioPlugin());
  try {
    const e = failure(() => p.call('recurse'));
    assert.equal(e.kind, 'TRAP');
    assert.equal(e.trap, 'stack_overflow');
    assert.equal(hex(p.call('count')), '01000000');
  } finally {
    p.close();
  }
});

test('a fuel budget is refused as NOT_SUPPORTED (LIM-4)', () => {
  const e = failure(() => loadPlugin(ioPlugin(), { limits: { fuel: 1000 } }));
  assert.equal(e.kind, 'NOT_SUPPORTED');
  assert.equal(e.clause, 'LIM-4');
});

test('an unknown function is UNKNOWN_FUNCTION', () => {
  const p = loadPlugin(ioPlugin());
  try {
    assert.equal(failure(() => p.call('nope')).kind, 'UNKNOWN_FUNCTION');
  } finally {
    p.close();
  }
});

const echoOnly = (extra) => buildPlugin({
  functions: [{ export: 'pabi_fn_f', code: [op.i32(0)] }],
  ...extra,
});

test('a newer ABI version is VERSION_MISMATCH naming both versions (VER-3, VER-4)', () => {
  const metadata = { abi: '1.1', name: 'v', version: '1.0.0', profile: 'core', functions: [{ name: 'f' }], capabilities: [] };
  const e = failure(() => checkPlugin(echoOnly({ metadata })));
  assert.equal(e.kind, 'VERSION_MISMATCH');
  assert.match(e.message, /1\.1/);
  assert.match(e.message, /1\.0/);
  const ok = checkPlugin(echoOnly({ metadata: { ...metadata, abi: '1.0' } }));
  assert.deepEqual([...ok.functions.keys()], ['f']);
});

test('an import the host lacks is INVALID_MODULE naming it (IMP-2, VER-4)', () => {
  const e = failure(() => checkPlugin(echoOnly({ imports: ['input_read', { name: 'input_size', type: 3 }] })));
  assert.equal(e.kind, 'INVALID_MODULE');
  assert.match(e.message, /pabi\.input_size/);
  assert.match(e.message, /ABI 1\.0/);
});

test('an import with the wrong signature is INVALID_MODULE (IMP-3)', () => {
  const e = failure(() => checkPlugin(echoOnly({ imports: [{ name: 'input_read', type: 4 }] })));
  assert.equal(e.kind, 'INVALID_MODULE');
  assert.equal(e.clause, 'IMP-3');
});

test('metadata that lists a function the module does not export is INVALID_MODULE (META-4)', () => {
  const metadata = { abi: '1.0', name: 'v', version: '1.0.0', profile: 'core', functions: [{ name: 'f' }, { name: 'g' }], capabilities: [] };
  const e = failure(() => checkPlugin(echoOnly({ metadata })));
  assert.equal(e.clause, 'META-4');
});

test('a declared capability that is not allowed is MISSING_CAPABILITY (WASI-5)', () => {
  const metadata = { abi: '1.0', name: 'v', version: '1.0.0', profile: 'wasi', functions: [{ name: 'f' }], capabilities: ['clock', 'random'] };
  const e = failure(() => checkPlugin(echoOnly({ metadata })));
  assert.equal(e.kind, 'MISSING_CAPABILITY');
  assert.match(e.message, /"clock"/);
  assert.match(e.message, /"random"/);
  assert.equal(checkPlugin(echoOnly({ metadata }), { allow: ['clock', 'random'] }).metadata.profile, 'wasi');
});

test('pabi_init gets the configuration once; a failing init fails the load with PLUGIN_ERROR (LIFE-2)', () => {
  // pabi_init: reads the config to 2048 and stores its length at 4096; returns 1 when the config is "bad"
  const init = {
    export: 'pabi_init',
    code: [op.i32(4096), op.i32(2048), op.i32(0), op.i32(1024), op.call(IMP.input_read), op.store,
      op.i32(2048), op.load, op.i32(0x00646162), [0x46], [0x04, 0x40], op.i32(1), [0x0f], [0x0b], op.i32(0)],
  };
  const config = { export: 'pabi_fn_config', code: [op.i32(2048), op.i32(4096), op.load, op.call(IMP.output_write), op.drop, op.i32(0)] };
  const bytes = buildPlugin({ functions: [init, config] });
  const p = loadPlugin(bytes, { config: Buffer.from('cfg') });
  try {
    assert.equal(Buffer.from(p.call('config')).toString(), 'cfg');
  } finally {
    p.close();
  }
  const e = failure(() => loadPlugin(bytes, { config: Buffer.from('bad') }));
  assert.equal(e.kind, 'PLUGIN_ERROR');
  assert.equal(e.status, 1);
});
