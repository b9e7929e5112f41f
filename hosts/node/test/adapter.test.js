import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ioPlugin, buildPlugin, op, IMP, hcPlugin, hcInput } from './helpers.js';
import { parseHostCallTable, tableFunctions, TableError } from '../../shared/table.js';
import { loadPlugin, PabiError } from '../src/index.js';

const ADAPTER = fileURLToPath(new URL('../bin/pabi-node.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pabi-node-'));
const plugin = path.join(dir, 'io.wasm');
fs.writeFileSync(plugin, ioPlugin());

// Declares fs:/data:ro and imports path_open, which this host does not
// implement (UNSUPPORTED).
const fsPlugin = path.join(dir, 'fs.wasm');
fs.writeFileSync(fsPlugin, buildPlugin({
  imports: ['input_read', 'output_write', 'error_write', 'log', { module: 'wasi_snapshot_preview1', name: 'path_open', type: 8 }],
  metadata: { abi: '1.0', name: 'fs', version: '3.4.5', profile: 'wasi', functions: [{ name: 'f' }], capabilities: ['fs:/data:ro'] },
  functions: [{ export: 'pabi_fn_f', code: [op.i32(0)] }],
}));

function run(...args) {
  const r = spawnSync(process.execPath, [ADAPTER, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { status: r.status, lines: r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)), stderr: r.stderr };
}

test('the adapter prints one JSON line per call and exits 0', () => {
  const r = run(plugin, 'echo', '--input-hex', '6869', '--then', 'fail:', '--then', 'status:05000000', '--then', 'wrap:', '--then', 'count:', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.lines[0], { ok: true, output_hex: '6869' });
  assert.deepEqual(r.lines[1], { ok: false, kind: 'PLUGIN_ERROR', status: 1, message: 'bad input' });
  assert.equal(r.lines[2].kind, 'UNKNOWN_STATUS');
  assert.equal(r.lines[2].status, 5);
  assert.equal(r.lines[3].kind, 'ABI_VIOLATION');
  assert.equal(r.lines[3].clause, 'MEM-3');
  assert.deepEqual(r.lines[4], { ok: true, output_hex: '01000000' });
  assert.equal(r.lines.length, 5);
});

test('the adapter answers NOT_SUPPORTED for a fuel budget', () => {
  const r = run(plugin, 'count', '--input-hex', '', '--fuel', '100', '--format', 'json');
  assert.equal(r.status, 0);
  assert.deepEqual(r.lines, [{ ok: false, kind: 'NOT_SUPPORTED', message: r.lines[0].message, clause: 'LIM-4' }]);
});

test('the adapter enforces --max-output and --timeout-ms', () => {
  const r = run(plugin, 'flood', '--input-hex', '', '--then', 'spin:', '--max-output', '1000', '--timeout-ms', '50', '--format', 'json');
  assert.equal(r.status, 0);
  assert.equal(r.lines[0].kind, 'OUTPUT_LIMIT');
  assert.equal(r.lines[1].kind, 'TIMEOUT');
});

test('the adapter exits 2 on bad arguments', () => {
  assert.equal(run(plugin).status, 2);
  assert.equal(run(plugin, 'echo', '--input-hex', 'zz', '--format', 'json').status, 2);
});

test('@save on a plugin without the state pair is UNKNOWN_FUNCTION', () => {
  const r = run(plugin, '@save', '--input-hex', '', '--format', 'json');
  assert.equal(r.lines[0].kind, 'UNKNOWN_FUNCTION');
});

test('large inputs and configurations come from files: --input, --config, --then F:@FILE', () => {
  const big = Buffer.alloc(70000, 0x61);
  const file = path.join(dir, 'input.bin');
  fs.writeFileSync(file, big);
  const roomy = path.join(dir, 'roomy.wasm');
  fs.writeFileSync(roomy, ioPlugin({ memoryPages: 3 }));
  const r = run(roomy, 'echo', '--input', file, '--then', `echo:@${file}`, '--config', file, '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 2);
  for (const line of r.lines) assert.deepEqual(line, { ok: true, output_hex: big.toString('hex') });
});

// The only two shapes a result line may take (host-guide, "Result lines";
// spec/schemas/adapter-result.schema.json, less its `x-` vendor fields, which
// this adapter never prints). Returns the first problem, or null.
const KINDS = new Set(['INVALID_MODULE', 'VERSION_MISMATCH', 'MISSING_CAPABILITY', 'ABI_VIOLATION', 'TRAP', 'TIMEOUT',
  'FUEL_EXHAUSTED', 'MEMORY_LIMIT', 'OUTPUT_LIMIT', 'MODULE_LIMIT', 'INPUT_LIMIT', 'UNKNOWN_STATUS', 'PLUGIN_ERROR',
  'UNKNOWN_FUNCTION', 'CRASH_LOOP', 'UNSUPPORTED', 'CANCELLED', 'HOST_FAILURE', 'NOT_SUPPORTED']);
const TRAPS = new Set(['unreachable', 'memory_out_of_bounds', 'table_out_of_bounds', 'indirect_call_null', 'indirect_call_type',
  'integer_divide_by_zero', 'integer_overflow', 'invalid_conversion', 'stack_overflow', 'null_reference', 'other']);
// `host_calls`, on either shape: a non-empty list of { name, request_hex }.
function hostCallsProblem(v) {
  if (!Array.isArray(v) || v.length === 0) return `host_calls ${JSON.stringify(v)}`;
  for (const c of v) {
    if (typeof c !== 'object' || c === null || Object.keys(c).sort().join() !== 'name,request_hex') return `host call ${JSON.stringify(c)}`;
    if (typeof c.name !== 'string' || typeof c.request_hex !== 'string' || !/^([0-9a-f]{2})*$/.test(c.request_hex)) return `host call ${JSON.stringify(c)}`;
  }
  return null;
}
function shapeProblem(line) {
  if (line.ok === true) {
    const keys = Object.keys(line).filter((k) => k !== 'host_calls').sort().join();
    if (keys !== 'ok,output_hex') return `success line with fields ${keys}`;
    if ('host_calls' in line && hostCallsProblem(line.host_calls)) return hostCallsProblem(line.host_calls);
    return /^([0-9a-f]{2})*$/.test(line.output_hex) ? null : `output_hex ${JSON.stringify(line.output_hex)}`;
  }
  if (line.ok !== false) return `ok is ${JSON.stringify(line.ok)}`;
  if (!KINDS.has(line.kind)) return `kind ${JSON.stringify(line.kind)}`;
  if (typeof line.message !== 'string') return `message ${JSON.stringify(line.message)}`;
  const withStatus = line.kind === 'PLUGIN_ERROR' || line.kind === 'UNKNOWN_STATUS';
  if (withStatus !== ('status' in line)) return `status on a ${line.kind} line: ${JSON.stringify(line.status)}`;
  if ((line.kind === 'ABI_VIOLATION' || line.kind === 'NOT_SUPPORTED') && !('clause' in line)) return `no clause on ${line.kind}`;
  for (const [k, v] of Object.entries(line)) {
    if (k === 'ok' || k === 'kind' || k === 'message') continue;
    if (k === 'status') { if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) return `status ${JSON.stringify(v)}`; continue; }
    if (k === 'clause') {
      if (!['ABI_VIOLATION', 'NOT_SUPPORTED', 'INVALID_MODULE'].includes(line.kind)) return `clause on a ${line.kind} line`;
      if (typeof v !== 'string' || !/^(MOD|MEM|IMP|EXP|FN|ERR|VER|LIFE|META|WASI|CALL|LIM|SEC|HOST)-[1-9][0-9]*$/.test(v)) return `clause ${JSON.stringify(v)}`;
      continue;
    }
    if (k === 'host_calls') { const problem = hostCallsProblem(v); if (problem) return problem; continue; }
    if (k === 'trap') { if (line.kind !== 'TRAP' || !TRAPS.has(v)) return `trap ${JSON.stringify(v)} on a ${line.kind} line`; continue; }
    return `unexpected field ${k}`;
  }
  return null;
}

test('the shape check itself refuses null, undefined-turned-null and stray fields', () => {
  assert.equal(shapeProblem({ ok: true, output_hex: '' }), null);
  assert.equal(shapeProblem({ ok: false, kind: 'TRAP', message: 'x', trap: 'unreachable' }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'TRAP', message: 'x', trap: null }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'PLUGIN_ERROR', message: 'x', status: null }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'PLUGIN_ERROR', status: 1 }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'PLUGIN_ERROR', message: 'x', detail: 'y' }), null);
  assert.notEqual(shapeProblem({ ok: true, output_hex: 'AB' }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'MEMORY_LIMIT', message: 'x', trap: 'unreachable' }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'TRAP', message: 'x', status: 3 }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'TIMEOUT', message: 'x', clause: 'LIM-3' }), null);
  assert.equal(shapeProblem({ ok: true, output_hex: '', host_calls: [{ name: 'kv.get', request_hex: '00' }] }), null);
  assert.notEqual(shapeProblem({ ok: true, output_hex: '', host_calls: [] }), null);
  assert.notEqual(shapeProblem({ ok: true, output_hex: '', host_calls: null }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'TIMEOUT', message: 'x', host_calls: [{ name: 'kv.get', request_hex: 'AB' }] }), null);
  assert.notEqual(shapeProblem({ ok: false, kind: 'TIMEOUT', message: 'x', host_calls: [{ name: 'kv.get', request_hex: '', x: 1 }] }), null);
});

test('every kind of line the adapter prints has exactly the protocol shape', () => {
  const lines = [];
  // Calls: OK, PLUGIN_ERROR, UNKNOWN_STATUS, ABI_VIOLATION, TRAP, MEMORY_LIMIT
  // (a trap after a refused growth: no `trap` field), UNKNOWN_FUNCTION,
  // OUTPUT_LIMIT, TIMEOUT.
  const calls = run(plugin, 'echo', '--input-hex', '6869', '--then', 'fail:', '--then', 'status:05000000', '--then', 'wrap:',
    '--then', 'trap:', '--then', 'growtrap:', '--then', 'nosuch:', '--then', 'flood:', '--then', 'spin:',
    '--max-memory', '2097152', '--max-output', '1000', '--timeout-ms', '50', '--format', 'json');
  assert.equal(calls.status, 0, calls.stderr);
  assert.deepEqual(calls.lines.map((l) => l.kind ?? 'OK'),
    ['OK', 'PLUGIN_ERROR', 'UNKNOWN_STATUS', 'ABI_VIOLATION', 'TRAP', 'MEMORY_LIMIT', 'UNKNOWN_FUNCTION', 'OUTPUT_LIMIT', 'TIMEOUT']);
  assert.equal(calls.lines[4].trap, 'unreachable');
  assert.equal(calls.lines[5].trap, undefined);
  lines.push(...calls.lines);
  // Loads that fail: INVALID_MODULE with its clause, NOT_SUPPORTED.
  const notWasm = path.join(dir, 'not-wasm.wasm');
  fs.writeFileSync(notWasm, Buffer.from('not wasm'));
  const invalid = run(notWasm, 'echo', '--input-hex', '', '--format', 'json');
  assert.equal(invalid.status, 0, invalid.stderr);
  assert.deepEqual(invalid.lines, [{ ok: false, kind: 'INVALID_MODULE', message: invalid.lines[0].message, clause: 'MOD-1' }]);
  lines.push(...invalid.lines);
  lines.push(...run(plugin, 'count', '--input-hex', '', '--fuel', '1', '--format', 'json').lines);
  // UNSUPPORTED (no clause) and NOT_SUPPORTED for a grant.
  const unsupported = run(fsPlugin, 'f', '--input-hex', '', '--format', 'json');
  assert.equal(unsupported.lines[0].kind, 'UNSUPPORTED');
  lines.push(...unsupported.lines);
  lines.push(...run(fsPlugin, 'f', '--input-hex', '', '--dir', `${dir}:/data:ro`, '--format', 'json').lines);
  for (const line of lines) assert.equal(shapeProblem(line), null, JSON.stringify(line));
});

test('failure lines leave out fields that have no value or do not belong to the kind', async () => {
  const { failure } = await import('../../shared/result.js');
  const { PabiError } = await import('../src/index.js');
  const e = new PabiError('PLUGIN_ERROR', { status: 1, pluginMessage: new Uint8Array([0x68, 0xff]) });
  assert.deepEqual(failure(e), { ok: false, kind: 'PLUGIN_ERROR', message: 'h\ufffd', status: 1 });
  const nulls = new PabiError('TRAP', { detail: 'x' });
  nulls.trap = null;
  nulls.status = null;
  nulls.clause = null;
  assert.deepEqual(Object.keys(failure(nulls)).sort(), ['kind', 'message', 'ok']);
  const misplaced = new PabiError('MEMORY_LIMIT', { trap: 'unreachable', clause: 'LIM-2', status: 3 });
  assert.deepEqual(Object.keys(failure(misplaced)).sort(), ['kind', 'message', 'ok']);
  const invalid = new PabiError('INVALID_MODULE', { clause: 'MOD-3', detail: '[MOD-3] start section' });
  assert.equal(failure(invalid).clause, 'MOD-3');
  assert.throws(() => failure(new Error('not a host error')));
});

test('an input or state file longer than 2^31 - 1 bytes is INPUT_LIMIT without being read, and the instance stays live (LIM-13)', () => {
  const big = path.join(dir, 'big.bin');
  const fd = fs.openSync(big, 'w');
  fs.ftruncateSync(fd, 2 ** 31); // sparse: no disk space, and the adapter must not read it
  fs.closeSync(fd);
  try {
    const r = run(plugin, 'count', '--input-hex', '', '--then', `echo:@${big}`, '--then', 'count:', '--format', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.lines[0], { ok: true, output_hex: '01000000' });
    assert.equal(r.lines[1].kind, 'INPUT_LIMIT');
    assert.match(r.lines[1].message, /2147483648/);
    assert.deepEqual(r.lines[2], { ok: true, output_hex: '02000000' });
    const c = run(plugin, 'count', '--input-hex', '', '--config', big, '--format', 'json');
    assert.equal(c.status, 0, c.stderr);
    assert.equal(c.lines.length, 1);
    assert.equal(c.lines[0].kind, 'INPUT_LIMIT');
  } finally {
    fs.rmSync(big);
  }
});

test('the adapter escapes control characters of plugin log text before printing it (SEC-3)', () => {
  const p = path.join(dir, 'escape.wasm');
  fs.writeFileSync(p, ioPlugin({ data: [[0, [...Buffer.from('\u001b[2Jx\ny')]]] }));
  // loglevel logs the 9 bytes at 0 at the level of its input.
  const r = run(p, 'loglevel', '--input-hex', '02000000', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!r.stderr.includes('\u001b'), r.stderr);
  assert.match(r.stderr, /\\u001b\[2Jx\\ny/);
});

test('a result line longer than a pipe holds is printed whole before the adapter exits', async () => {
  // bigerror's 65,536-byte message, mostly zero bytes, is a line of about
  // 393,000 characters once escaped, more than a pipe buffers. The reader
  // here waits before it reads, as a runner may: an adapter that exits
  // while the line is still queued for the full pipe loses its end.
  const p = path.join(dir, 'two-pages.wasm');
  fs.writeFileSync(p, ioPlugin({ memoryPages: 2 }));
  const child = spawn(process.execPath, [ADAPTER, p, 'bigerror', '--input-hex', '', '--format', 'json'], { stdio: ['ignore', 'pipe', 'ignore'] });
  child.stdout.pause();
  await new Promise((r) => setTimeout(r, 1000));
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => { out += d; });
  child.stdout.resume();
  const status = await new Promise((r) => child.on('close', r));
  assert.equal(status, 0);
  const line = JSON.parse(out);
  assert.equal(line.kind, 'PLUGIN_ERROR');
  assert.equal(line.message.length, 65536);
});

// env: the environment block as environ_get writes it (WASI-8); clock: one
// byte, 1 when the realtime clock reads after 2017 (a real clock), 0 for
// the virtual clock of WASI-6, which starts at one second.
function grantPlugin(capabilities) {
  const [SIZES, GET, CLOCK] = [4, 5, 6];
  return buildPlugin({
    imports: ['input_read', 'output_write', 'error_write', 'log',
      { module: 'wasi_snapshot_preview1', name: 'environ_sizes_get', type: 1 },
      { module: 'wasi_snapshot_preview1', name: 'environ_get', type: 1 },
      { module: 'wasi_snapshot_preview1', name: 'clock_time_get', type: 5 }],
    metadata: { abi: '1.0', name: 'grant', version: '3.4.5', profile: 'wasi', functions: [{ name: 'env' }, { name: 'clock' }, { name: 'random' }], capabilities },
    functions: [
      { export: 'pabi_fn_env', code: [op.i32(0), op.i32(4), op.call(SIZES), op.drop, op.i32(16), op.i32(1024), op.call(GET), op.drop,
        op.i32(1024), op.i32(4), op.load, op.call(IMP.output_write), op.drop, op.i32(0)] },
      { export: 'pabi_fn_clock', code: [op.i32(0), [0x42, 0x01], op.i32(8), op.call(CLOCK), op.drop,
        op.i32(0), op.i32(8), [0x29, 0x03, 0x00], [0x42, ...s64(1500000000000000000n)], [0x56], [0x3a, 0x00, 0x00],
        op.i32(0), op.i32(1), op.call(IMP.output_write), op.drop, op.i32(0)] },
      { export: 'pabi_fn_random', code: [op.i32(0)] },
    ],
  });
}
function s64(v) {
  const out = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && !(b & 0x40)) || (v === -1n && b & 0x40)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}

test('the grant flags allow capabilities; the plugin gets only those it declares (WASI-5, SEC-4)', () => {
  const p = path.join(dir, 'grant.wasm');
  fs.writeFileSync(p, grantPlugin(['env:GREETING', 'clock']));
  const r = run(p, 'env', '--input-hex', '', '--then', 'clock:', '--allow-clock', '--allow-random', '--env', 'GREETING=hello=world',
    '--env', 'SECRET=not-declared', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  // Split at the first `=`; SECRET, offered but not declared, is not seen.
  assert.deepEqual(r.lines, [{ ok: true, output_hex: Buffer.from('GREETING=hello=world\0').toString('hex') }, { ok: true, output_hex: '01' }]);
  // Without the flags, the declared capabilities are missing, each named.
  const none = run(p, 'env', '--input-hex', '', '--env', 'OTHER=1', '--format', 'json');
  assert.equal(none.lines.length, 1);
  assert.equal(none.lines[0].kind, 'MISSING_CAPABILITY');
  assert.match(none.lines[0].message, /env:GREETING/);
  assert.match(none.lines[0].message, /"clock"/);
});

test('a plugin declaring more than the flags allow is MISSING_CAPABILITY naming only what is missing (WASI-5)', () => {
  const p = path.join(dir, 'clock-random.wasm');
  fs.writeFileSync(p, grantPlugin(['clock', 'random']));
  const r = run(p, 'random', '--input-hex', '', '--allow-clock', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 1);
  assert.equal(r.lines[0].kind, 'MISSING_CAPABILITY');
  assert.match(r.lines[0].message, /"random"/);
  assert.doesNotMatch(r.lines[0].message, /"clock"/);
  assert.deepEqual(run(p, 'random', '--input-hex', '', '--allow-clock', '--allow-random', '--format', 'json').lines, [{ ok: true, output_hex: '' }]);
});

test('--dir is NOT_SUPPORTED citing WASI-5: this host has no file system (host-guide, adapter step 5)', () => {
  for (const grant of [`${dir}:/data:ro`, `${dir}:/data`]) {
    const r = run(fsPlugin, 'f', '--input-hex', '', '--dir', grant, '--format', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.lines, [{ ok: false, kind: 'NOT_SUPPORTED', message: r.lines[0].message, clause: 'WASI-5' }]);
  }
  assert.equal(run(fsPlugin, 'f', '--input-hex', '', '--dir', 'no-guest-path', '--format', 'json').status, 2);
  assert.equal(run(fsPlugin, 'f', '--input-hex', '', '--env', 'NOVALUE', '--format', 'json').status, 2);
});

test('a plugin file that does not exist or cannot be read is a bad argument: exit 2, message on standard error', () => {
  for (const missing of [path.join(dir, 'no-such.wasm'), dir]) {
    const r = run(missing, 'echo', '--input-hex', '', '--format', 'json');
    assert.equal(r.status, 2);
    assert.deepEqual(r.lines, []);
    assert.match(r.stderr, /cannot read/);
  }
});

test('a plugin file past the compile budget is MODULE_LIMIT from its size, without being read (LIM-12)', () => {
  const big = path.join(dir, 'big.wasm');
  const fd = fs.openSync(big, 'w');
  // Sparse, 2^31 bytes: Node cannot read a file this large into one
  // buffer, so an adapter that read it first would fail to (exit 2).
  fs.ftruncateSync(fd, 2 ** 31);
  fs.closeSync(fd);
  try {
    const r = run(big, 'echo', '--input-hex', '', '--format', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.lines.length, 1);
    assert.equal(r.lines[0].kind, 'MODULE_LIMIT');
    assert.match(r.lines[0].message, /2147483648/);
  } finally {
    fs.rmSync(big);
  }
});

test('after the last call the adapter calls pabi_shutdown on a live instance; its failure is logged and the exit status stays 0 (LIFE-4)', () => {
  const p = path.join(dir, 'shutdown.wasm');
  fs.writeFileSync(p, buildPlugin({
    functions: [
      { export: 'pabi_fn_f', code: [op.i32(0)] },
      { export: 'pabi_fn_trap', code: [op.unreachable, op.i32(0)] },
      { export: 'pabi_shutdown', type: 9, code: [op.i32(3)] },
    ],
  }));
  const r = run(p, 'f', '--input-hex', '', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.lines, [{ ok: true, output_hex: '' }]);
  assert.match(r.stderr, /pabi_shutdown returned status 3/);
  // No live instance after a trap: nothing to shut down.
  const dead = run(p, 'f', '--input-hex', '', '--then', 'trap:', '--format', 'json');
  assert.equal(dead.status, 0, dead.stderr);
  assert.doesNotMatch(dead.stderr, /pabi_shutdown/);
});

// ABI 1.1 host calls through the adapter (host-guide, "The adapter command").
const hcWasm = path.join(dir, 'hc.wasm');
fs.writeFileSync(hcWasm, hcPlugin());
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const callHex = (...args) => hex(hcInput(...args));
function table(doc) {
  const file = path.join(fs.mkdtempSync(path.join(dir, 'table-')), 'host-calls.json');
  fs.writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return file;
}
// What `call` outputs: the code, the count read, the reply bytes read.
const answered = (line) => {
  const b = Buffer.from(line.output_hex, 'hex');
  return { code: b.readInt32LE(0), read: b.readInt32LE(4), reply: b.subarray(8).toString() };
};
const TABLE = {
  'kv.get': [{ request: 'apple', reply: 'red' }, { request_hex: '00ff', fail: 'no such key', delay_ms: 1 }, { reply_hex: '0a0b' }],
  'kv.init': [{ reply: 'i' }],
  'kv.slow': [{ delay_ms: 300, reply: 'late' }],
};

test('--host-calls offers each name the table lists, answers by its rules in order, and each line lists the requests of its call (CALL-4, CALL-5)', () => {
  const r = run(hcWasm, 'call', '--input-hex', callHex('kv.get', 'apple'), '--then', `call:${callHex('kv.get', Buffer.from([0, 0xff]))}`,
    '--then', `call:${callHex('kv.get', 'pear')}`, '--then', 'count:', '--then', `call:${callHex('kv.big')}`,
    '--host-calls', table(TABLE), '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 5);
  for (const line of r.lines) assert.equal(shapeProblem(line), null, JSON.stringify(line));
  assert.deepEqual(answered(r.lines[0]), { code: 3, read: 3, reply: 'red' });
  // The first line also carries the host call of the first load's pabi_init.
  assert.deepEqual(r.lines[0].host_calls, [{ name: 'kv.init', request_hex: hex('apple') }, { name: 'kv.get', request_hex: hex('apple') }]);
  assert.deepEqual(answered(r.lines[1]), { code: -4, read: 11, reply: 'no such key' });
  assert.deepEqual(r.lines[1].host_calls, [{ name: 'kv.get', request_hex: '00ff' }]);
  assert.deepEqual(answered(r.lines[2]), { code: 2, read: 2, reply: '\n\u000b' });
  assert.deepEqual(r.lines[3], { ok: true, output_hex: '01000000' });
  // kv.big is declared but not in the table: not offered, no handler ran.
  assert.deepEqual(r.lines[4], { ok: true, output_hex: 'fbffffff00000000' });
});

test('a request no rule matches is a handler failure naming the request, as text or as hex (CALL-4)', () => {
  const file = table({ 'kv.get': [{ request: 'apple', reply: 'red' }] });
  const r = run(hcWasm, 'call', '--input-hex', callHex('kv.get', 'pear'), '--then', `call:${callHex('kv.get', Buffer.from([1, 0xfe]))}`,
    '--host-calls', file, '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  const text = answered(r.lines[0]);
  assert.equal(text.code, -4);
  assert.match(text.reply, /kv\.get/);
  assert.match(text.reply, /"pear"/);
  assert.match(answered(r.lines[1]).reply, /0x01fe/);
});

test('a slow handler ends the call with TIMEOUT, whose line lists the request; the next call runs (CALL-7, LIM-3)', () => {
  const r = run(hcWasm, 'call', '--input-hex', callHex('kv.slow', 'x'), '--then', `call:${callHex('kv.get', 'apple')}`,
    '--host-calls', table({ 'kv.get': TABLE['kv.get'], 'kv.slow': TABLE['kv.slow'] }), '--timeout-ms', '100', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines[0].kind, 'TIMEOUT');
  assert.deepEqual(r.lines[0].host_calls, [{ name: 'kv.slow', request_hex: '78' }]);
  assert.equal(shapeProblem(r.lines[0]), null);
  assert.deepEqual(answered(r.lines[1]), { code: 3, read: 3, reply: 'red' });
});

test('--max-request and --max-reply set the caps of LIM-14', () => {
  const r = run(hcWasm, 'call', '--input-hex', callHex('kv.get', 'apple'), '--then', `call:${callHex('kv.get', 'pear')}`,
    '--host-calls', table(TABLE), '--max-request', '4', '--max-reply', '1', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(answered(r.lines[0]), { code: -1, read: 0, reply: '' });
  // The handler ran for "pear" (4 bytes), but its reply of 2 bytes was dropped.
  assert.deepEqual(answered(r.lines[1]), { code: -1, read: 0, reply: '' });
  assert.deepEqual(r.lines[1].host_calls, [{ name: 'kv.get', request_hex: hex('pear') }]);
});

test('without --host-calls nothing is offered: a required host call is MISSING_CAPABILITY naming host_call:NAME (CALL-5)', () => {
  const required = path.join(dir, 'hc-required.wasm');
  fs.writeFileSync(required, hcPlugin({ hostCalls: [{ name: 'kv.get', required: true }, { name: 'kv.init', required: false }, { name: 'kv.big', required: false }] }));
  const r = run(required, 'count', '--input-hex', '', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 1);
  assert.equal(r.lines[0].kind, 'MISSING_CAPABILITY');
  assert.match(r.lines[0].message, /host_call:kv\.get/);
  // A host call is offered or not; only a capability is allowed or not.
  assert.match(r.lines[0].message, /does not offer/);
  assert.doesNotMatch(r.lines[0].message, /not allow/);
  assert.deepEqual(run(required, 'count', '--input-hex', '', '--host-calls', table({ 'kv.get': [] }), '--format', 'json').lines, [{ ok: true, output_hex: '01000000' }]);
});

test('--abi 1.0 refuses a 1.1 plugin with VERSION_MISMATCH naming both versions; a version this host cannot offer is a bad argument (CALL-9)', () => {
  const r = run(hcWasm, 'count', '--input-hex', '', '--abi', '1.0', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines[0].kind, 'VERSION_MISMATCH');
  assert.match(r.lines[0].message, /ABI 1\.1/);
  assert.match(r.lines[0].message, /ABI 1\.0/);
  assert.deepEqual(run(hcWasm, 'count', '--input-hex', '', '--abi', '1.1', '--format', 'json').lines, [{ ok: true, output_hex: '01000000' }]);
  for (const bad of ['1.2', '2.0', '1', 'x']) assert.equal(run(hcWasm, 'count', '--input-hex', '', '--abi', bad, '--format', 'json').status, 2, bad);
});

test('a host-call cap above 2^31 - 1 bytes is a bad argument: exit 2 (LIM-14)', () => {
  for (const flag of ['--max-request', '--max-reply']) {
    const over = run(hcWasm, 'count', '--input-hex', '', flag, '2147483648', '--format', 'json');
    assert.equal(over.status, 2, flag);
    assert.deepEqual(over.lines, []);
    assert.match(over.stderr, /LIM-14/);
    const max = run(hcWasm, 'count', '--input-hex', '', flag, '2147483647', '--format', 'json');
    assert.equal(max.status, 0, max.stderr);
    assert.deepEqual(max.lines, [{ ok: true, output_hex: '01000000' }]);
  }
});

test('a host-call table that does not follow the schema, or cannot be read, is a bad argument: exit 2', () => {
  const bad = [
    '{"kv.get": [{"reply": "a", "fail": "b"}]}',
    '{"kv.get": [{"reply": "a", "reenter": "count"}]}',
    '{"kv.get": [{"fail": "a", "reenter": "count"}]}',
    '{"kv.get": [{"reply_hex": "61", "reenter": "count"}]}',
    '{"kv.get": [{"reenter": 5}]}',
    '{"kv.get": [{}]}',
    '{"kv.get": [{"request": "a", "request_hex": "61", "reply": ""}]}',
    '{"kv.get": [{"reply_hex": "zz"}]}',
    '{"kv.get": [{"reply_hex": "abc"}]}',
    '{"kv.get": [{"reply": "", "extra": 1}]}',
    '{"kv.get": [{"reply": "", "delay_ms": -1}]}',
    '{"kv.get": [{"reply": "", "delay_ms": 1.5}]}',
    '{"kv.get": [{"reply": 5}]}',
    '{"kv.get": {"reply": ""}}',
    '{"KV": [{"reply": ""}]}',
    '{"a.b.c.d.e": [{"reply": ""}]}',
    '{"pabi.time": [{"reply": ""}]}',
    '[]',
    'not json',
  ];
  for (const text of bad) {
    const r = run(hcWasm, 'count', '--input-hex', '', '--host-calls', table(text), '--format', 'json');
    assert.equal(r.status, 2, text);
    assert.deepEqual(r.lines, [], text);
  }
  assert.equal(run(hcWasm, 'count', '--input-hex', '', '--host-calls', path.join(dir, 'no-such-table.json'), '--format', 'json').status, 2);
  assert.equal(run(hcWasm, 'count', '--input-hex', '', '--max-reply', '-1', '--format', 'json').status, 2);
});

test('the table reader accepts what the schema accepts', () => {
  assert.deepEqual([...parseHostCallTable('{}')], []);
  const t = parseHostCallTable(JSON.stringify(TABLE));
  assert.deepEqual([...t.keys()], ['kv.get', 'kv.init', 'kv.slow']);
  assert.deepEqual(t.get('kv.get')[1], { request: new Uint8Array([0, 0xff]), reply: null, fail: 'no such key', reenter: null, delayMs: 1 });
  assert.deepEqual(t.get('kv.get')[2], { request: null, reply: new Uint8Array([10, 11]), fail: null, reenter: null, delayMs: 0 });
  assert.deepEqual(parseHostCallTable('{"kv.get": [{"request": "again", "reenter": "call", "delay_ms": 2}]}').get('kv.get'),
    [{ request: bytesOf('again'), reply: null, fail: null, reenter: 'call', delayMs: 2 }]);
  assert.deepEqual(parseHostCallTable('{"a.b.c.d": []}').get('a.b.c.d'), []);
  assert.throws(() => parseHostCallTable('{"kv": []}'), TableError);
});

const bytesOf = (text) => new TextEncoder().encode(text);

test('a table\'s reenter answer calls the plugin it serves back, which the host refuses: the handler fails with `refused` and the instance goes on (CALL-8, HOST-10)', () => {
  const doc = { 'kv.get': [{ request: 'again', reenter: 'count' }, { request: 'apple', reply: 'red' }], 'kv.init': [{ reenter: 'count' }] };
  const r = run(hcWasm, 'count', '--input-hex', '', '--then', `call:${callHex('kv.get', 'again')}`, '--then', `call:${callHex('kv.get', 'apple')}`,
    '--then', 'count:', '--then', 'initcode:', '--host-calls', table(doc), '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 5);
  for (const line of r.lines) assert.equal(shapeProblem(line), null, JSON.stringify(line));
  assert.equal(r.lines[0].output_hex, '01000000');
  assert.deepEqual(r.lines[0].host_calls, [{ name: 'kv.init', request_hex: hex('apple') }]);
  assert.deepEqual(answered(r.lines[1]), { code: -4, read: 7, reply: 'refused' });
  assert.deepEqual(r.lines[1].host_calls, [{ name: 'kv.get', request_hex: hex('again') }]);
  assert.deepEqual(answered(r.lines[2]), { code: 3, read: 3, reply: 'red' });
  // No refused call ran plugin code: the counter goes on from 1.
  assert.deepEqual(r.lines[3], { ok: true, output_hex: '02000000' });
  // kv.init from pabi_init, before the application holds the plugin, is
  // refused too (from _initialize it is E_PHASE: HOST-8).
  assert.deepEqual(r.lines[4], { ok: true, output_hex: 'fdfffffffcffffff' });
});

test('tableFunctions: reenter goes through the host, whose CALL-8 refusal is `refused`; an output is the reply, another error its own message', () => {
  const rules = parseHostCallTable(JSON.stringify({ 'kv.get': [{ request: 'again', reenter: 'count' }, { reenter: 'nope' }] }));
  const bytes = hcPlugin();
  const other = loadPlugin(bytes);
  let target = null;
  const p = loadPlugin(bytes, { hostFunctions: tableFunctions(rules, () => {}, (fn, input) => target(fn, input)) });
  const callBack = (plugin) => (fn, input) => plugin.call(fn, input);
  const refusedCall = () => { throw new PabiError('HOST_FAILURE', { clause: 'CALL-8', detail: 'busy' }); };
  const answer = (request) => {
    const b = Buffer.from(p.call('call', hcInput('kv.get', request)));
    return { code: b.readInt32LE(0), reply: b.subarray(8).toString('hex') };
  };
  try {
    target = callBack(p);
    assert.deepEqual(answer('again'), { code: -4, reply: hex(bytesOf('refused')) });
    // Had the call run, its output would be the reply: another instance runs it.
    target = callBack(other);
    assert.deepEqual(answer('again'), { code: 4, reply: '01000000' });
    // Any other error is the handler's failure with its own message.
    const unknown = answer('apple');
    assert.equal(unknown.code, -4);
    assert.match(Buffer.from(unknown.reply, 'hex').toString(), /nope/);
    assert.doesNotMatch(Buffer.from(unknown.reply, 'hex').toString(), /^refused$/);
    target = () => { throw new PabiError('HOST_FAILURE', { detail: 'not a refusal' }); };
    assert.match(Buffer.from(answer('again').reply, 'hex').toString(), /not a refusal/);
    target = refusedCall;
    assert.deepEqual(answer('again'), { code: -4, reply: hex(bytesOf('refused')) });
    // The refusals ran no plugin code of p.
    assert.deepEqual([...p.call('count')], [1, 0, 0, 0]);
  } finally {
    p.close();
    other.close();
  }
  // Without a way to call the plugin back, the rule fails saying so.
  const alone = loadPlugin(bytes, { hostFunctions: tableFunctions(rules) });
  try {
    const b = Buffer.from(alone.call('call', hcInput('kv.get', 'again')));
    assert.equal(b.readInt32LE(0), -4);
    assert.match(b.subarray(8).toString(), /cannot call the plugin back/);
  } finally {
    alone.close();
  }
});
