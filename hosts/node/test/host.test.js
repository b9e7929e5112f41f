import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { loadPlugin, checkPlugin, DESCRIPTIONS } from '../src/index.js';
import { walkSections, parseModule, checkFeatures } from '../../shared/reader.js';
import { rewriteModule } from '../../shared/rewrite.js';
import { bounds } from '../src/channel.js';
import { buildPlugin, ioPlugin, op, IMP, failure } from './helpers.js';

const u32le = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); return b; };
const hex = (b) => Buffer.from(b).toString('hex');


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

test('input_read and output_write reach memory the plugin grew after an earlier call (MEM-3)', () => {
  // The host keeps a view of the memory between calls; a growth replaces
  // the memory's buffer, and the view must follow it.
  const at = 65536 + 16;
  const p = loadPlugin(buildPlugin({
    functions: [
      { export: 'pabi_fn_echo', code: [op.i32(16), op.i32(0), op.localGet(0), op.call(IMP.input_read), op.drop, op.i32(16), op.localGet(0), op.call(IMP.output_write), op.drop, op.i32(0)] },
      { export: 'pabi_fn_growecho', code: [op.i32(1), op.memoryGrow, op.drop, op.i32(at), op.i32(0), op.localGet(0), op.call(IMP.input_read), op.drop, op.i32(at), op.localGet(0), op.call(IMP.output_write), op.drop, op.i32(0)] },
    ],
  }));
  try {
    assert.equal(hex(p.call('echo', Buffer.from('before'))), hex(Buffer.from('before')));
    assert.equal(hex(p.call('growecho', Buffer.from('after'))), hex(Buffer.from('after')));
    assert.equal(hex(p.call('growecho', Buffer.from('again'))), hex(Buffer.from('again')));
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
      const e = failure(() => p.call('spin'));
      assert.equal(e.kind, 'TIMEOUT');
      assert.match(e.message, /the call of pabi_fn_spin ran past its deadline of 100 ms/);
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

test('a newer ABI version is VERSION_MISMATCH naming both versions; 1.0 and 1.1 are accepted (VER-2, VER-3, VER-4)', () => {
  // The plugin's own version holds neither ABI version, so that "1.1" in
  // the message can only be the host's.
  const metadata = { abi: '1.2', name: 'v', version: '3.4.5', profile: 'core', functions: [{ name: 'f' }], capabilities: [] };
  const e = failure(() => checkPlugin(echoOnly({ metadata })));
  assert.equal(e.kind, 'VERSION_MISMATCH');
  assert.match(e.message, /declares ABI 1\.2/);
  assert.match(e.message, /implements ABI 1\.1/);
  for (const abi of ['1.0', '1.1']) {
    const ok = checkPlugin(echoOnly({ metadata: { ...metadata, abi } }));
    assert.deepEqual([...ok.functions.keys()], ['f']);
  }
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

test('a pabi import that is not a function is IMP-1, whatever its name, not a lacking function (IMP-1, HOST-1)', () => {
  const e = failure(() => checkPlugin(echoOnly({ imports: ['input_read', { name: 'table', desc: [0x01, 0x70, 0x00, 1] }] })));
  assert.equal(e.kind, 'INVALID_MODULE');
  assert.equal(e.clause, 'IMP-1', e.message);
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

// HOST-1: one construct that breaks several clauses is refused citing the
// most specific; several refusals are reported in the order MODULE_LIMIT,
// VERSION_MISMATCH, INVALID_MODULE, UNSUPPORTED, MISSING_CAPABILITY.

test('a memory of the wrong shape is INVALID_MODULE citing MOD-4, not the profile or an engine limit (HOST-1, MOD-4)', () => {
  const shapes = {
    '64-bit': { sections: { 5: [1, 0x04, 1] } },
    shared: { sections: { 5: [1, 0x03, 1, 2] } },
    'two memories': { sections: { 5: [2, 0x00, 1, 0x00, 1] } },
    imported: {
      sections: { 5: null },
      imports: [{ module: 'env', name: 'memory', desc: [0x02, 0x00, 1] }],
    },
  };
  for (const [what, extra] of Object.entries(shapes)) {
    const e = failure(() => checkPlugin(echoOnly(extra)));
    assert.equal(e.kind, 'INVALID_MODULE', what);
    assert.equal(e.clause, 'MOD-4', `${what}: ${e.message}`);
  }
});

test('an extended constant expression is INVALID_MODULE citing MOD-2, though V8 reads it as malformed (HOST-1, MOD-2)', () => {
  const add = [0x41, 1, 0x41, 2, 0x6a, 0x0b]; // i32.const 1; i32.const 2; i32.add; end
  const places = {
    'a global initialiser': { 6: [1, 0x7f, 0x00, ...add] },
    'a data segment offset': { 11: [1, 0x00, ...add, 1, 0x61] },
  };
  for (const [what, sections] of Object.entries(places)) {
    const bytes = echoOnly({ sections });
    assert.equal(WebAssembly.validate(bytes), false, `${what}: V8 refuses it`);
    const e = failure(() => checkPlugin(bytes));
    assert.equal(e.kind, 'INVALID_MODULE', what);
    assert.equal(e.clause, 'MOD-2', `${what}: ${e.message}`);
    assert.match(e.message, /i32\.add/);
  }
  // Bytes that no feature makes a constant expression are still MOD-1.
  const e = failure(() => checkPlugin(echoOnly({ sections: { 6: [1, 0x7f, 0x00, 0x41, 1, 0x01, 0x0b] } })));
  assert.equal(e.clause, 'MOD-1', e.message);
});

test('a body opcode of a proposal V8 lacks is MOD-2; an opcode of no proposal is MOD-1 (HOST-1)', () => {
  // 0xfb 0x1c is the GC proposal's ref.i31, which this V8 does not enable.
  const gc = echoOnly({ functions: [{ export: 'pabi_fn_f', code: [op.i32(0), [0xfb, 0x1c], op.drop, op.i32(0)] }] });
  assert.equal(WebAssembly.validate(gc), false);
  let e = failure(() => checkPlugin(gc));
  assert.equal(e.clause, 'MOD-2', e.message);
  const unknown = echoOnly({ functions: [{ export: 'pabi_fn_f', code: [[0xff], op.i32(0)] }] });
  e = failure(() => checkPlugin(unknown));
  assert.equal(e.clause, 'MOD-1', e.message);
});

test('a future version is VERSION_MISMATCH even when this version cannot read its module; the budget comes first (VER-8, HOST-1)', () => {
  // A GC type form (0x5f, a struct) in the type section: this version's
  // parse refuses it (MOD-2), but a plugin of ABI 2.0 may use it.
  const types = [2, 0x60, 1, 0x7f, 1, 0x7f, 0x5f, 0];
  const metadata = { abi: '2.0', name: 'v', version: '3.4.5', profile: 'core', functions: [{ name: 'f' }], capabilities: [] };
  const future = buildPlugin({ imports: [], functions: [{ export: 'pabi_fn_f', type: 0, code: [op.i32(0)] }], metadata, sections: { 1: types } });
  let e = failure(() => checkPlugin(future));
  assert.equal(e.kind, 'VERSION_MISMATCH', e.message);
  assert.match(e.message, /declares ABI 2\.0/);
  assert.match(e.message, /implements ABI 1\.1/);
  e = failure(() => checkPlugin(future, { budget: { maxFunctions: 0 } }));
  assert.equal(e.kind, 'MODULE_LIMIT', e.message);
  const current = buildPlugin({ imports: [], functions: [{ export: 'pabi_fn_f', type: 0, code: [op.i32(0)] }], metadata: { ...metadata, abi: '1.0' }, sections: { 1: types } });
  e = failure(() => checkPlugin(current));
  assert.equal(e.kind, 'INVALID_MODULE');
  assert.equal(e.clause, 'MOD-2', e.message);
});

test('a host failure is HOST_FAILURE, not counted against the plugin; the next call runs on a fresh instance (ERR-6)', () => {
  const p = loadPlugin(ioPlugin());
  const saved = { ...bounds };
  try {
    assert.equal(hex(p.call('count')), '01000000');
    // More host failures in a row than the crash loop allows (LIFE-7),
    // with no call between them: with no time to start, every worker
    // passes the bound of its start, and every load fails.
    bounds.workerStartMs = 0;
    for (let i = 0; i < 7; i++) {
      const e = failure(() => p.load());
      assert.equal(e.kind, 'HOST_FAILURE');
      assert.match(e.message, /^the host failed, not the plugin: the worker thread did not take the request within 0 ms during instantiation/);
    }
    Object.assign(bounds, saved);
    assert.equal(hex(p.call('count')), '01000000');
  } finally {
    Object.assign(bounds, saved);
    p.close();
  }
});

test('every error kind of ERR-6 has its fixed description, and no other kind but NOT_SUPPORTED is listed (ERR-6)', () => {
  const spec = fs.readFileSync(new URL('../../../spec/abi.md', import.meta.url), 'utf8');
  const from = spec.indexOf('| kind | raised when |');
  const table = spec.slice(from, spec.indexOf('\n\n', from));
  // Columns: kind, raised when, carries, fixed description, instance, Since.
  const rows = table.split('\n').slice(2).map((row) => row.split(' | ').map((cell) => cell.replace(/^\| |`| \|$/g, '')));
  const kinds = Object.fromEntries(rows.map((cells) => [cells[0], cells[3]]));
  assert.equal(Object.keys(kinds).length, 18);
  const { NOT_SUPPORTED, ...listed } = DESCRIPTIONS;
  assert.ok(NOT_SUPPORTED);
  assert.deepEqual(listed, kinds);
});
