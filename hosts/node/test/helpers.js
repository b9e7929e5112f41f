// Builds small test plugins as WebAssembly binaries, so that the tests need
// no text-format compiler; and the one way the tests expect a failure.

import assert from 'node:assert/strict';
import { PabiError } from '../src/index.js';

/** Runs `fn`, which must throw a PabiError, and returns the error. */
export function failure(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PabiError, `expected a PabiError, got ${e}`);
    return e;
  }
  assert.fail('expected the call to fail');
}

export const u32 = (v) => {
  const out = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
};
// Signed LEB128 of a 32-bit value.
export const s32 = (v) => {
  const out = [];
  v |= 0;
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
};
export const str = (s) => { const b = [...Buffer.from(s)]; return [...u32(b.length), ...b]; };
export const vec = (items) => [...u32(items.length), ...items.flat()];
export const section = (id, body) => [id, ...u32(body.length), ...body];

export const op = {
  i32: (v) => [0x41, ...s32(v)],
  call: (f) => [0x10, ...u32(f)],
  drop: [0x1a],
  localGet: (i) => [0x20, ...u32(i)],
  globalGet: (i) => [0x23, ...u32(i)],
  globalSet: (i) => [0x24, ...u32(i)],
  add: [0x6a],
  store: [0x36, 0x02, 0x00],
  load: [0x28, 0x02, 0x00],
  unreachable: [0x00],
  memoryGrow: [0x40, 0x00],
  end: [0x0b],
};
// Import indices.
export const IMP = { input_read: 0, output_write: 1, error_write: 2, log: 3 };

const TYPES = [
  [0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f], // 0: (i32 i32 i32) -> i32
  [0x60, 2, 0x7f, 0x7f, 1, 0x7f], // 1: (i32 i32) -> i32
  [0x60, 1, 0x7f, 1, 0x7f], // 2: (i32) -> i32
  [0x60, 0, 0], // 3: () -> ()
  [0x60, 3, 0x7f, 0x7f, 0x7f, 0], // 4: (i32 i32 i32) -> ()
  [0x60, 3, 0x7f, 0x7e, 0x7f, 1, 0x7f], // 5: (i32 i64 i32) -> i32, clock_time_get
  [0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f], // 6: (i32 i32 i32 i32) -> i32, fd_write, poll_oneoff
  [0x60, 1, 0x7f, 0], // 7: (i32) -> (), proc_exit
  [0x60, 9, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7e, 0x7e, 0x7f, 0x7f, 1, 0x7f], // 8: path_open
  [0x60, 0, 1, 0x7f], // 9: () -> i32, pabi_shutdown, sched_yield
];

/**
 * functions: [{ export, type (default 2), code: [...bytes] without the final end, locals: n i32 }]
 * imports: names of the pabi functions to import, in IMP order by default;
 *   an entry may be { name, type } to import something else.
 */
/*
 * tables: [{ min, max }] funcref tables; exports: extra [name, kind, index]
 * entries (kind 0 function, 3 global); metadataBytes: the raw `pabi`
 * payload, instead of metadata. An import may be { module, name, desc }
 * with `desc` the raw import description (kind byte first), for an import
 * that is not a function. sections: { id: body bytes } replaces the body
 * of the type (1), table (4), memory (5), global (6) or data (11) section
 * (null leaves the section out), for modules the other options cannot make.
 */
export function buildPlugin({ functions, metadata, metadataBytes, memoryPages = 1, data = [], imports = ['input_read', 'output_write', 'error_write', 'log'], extraImportsTypes = {}, tables = [], exports: extraExports = [], sections = {} }) {
  const importEntries = imports.map((imp) => {
    const name = typeof imp === 'string' ? imp : imp.name;
    const module = typeof imp === 'string' ? 'pabi' : imp.module ?? 'pabi';
    if (typeof imp !== 'string' && imp.desc) return [...str(module), ...str(name), ...imp.desc];
    const type = typeof imp === 'string' ? ({ input_read: 0, log: 0, output_write: 1, error_write: 1 }[name] ?? extraImportsTypes[name] ?? 1) : imp.type;
    return [...str(module), ...str(name), 0x00, ...u32(type)];
  });
  const part = (id, body) => {
    const chosen = id in sections ? sections[id] : body;
    return chosen === null ? [] : section(id, chosen);
  };
  const fnNames = functions.filter((f) => f.export?.startsWith('pabi_fn_')).map((f) => f.export.slice(8));
  const meta = metadata ?? { abi: '1.0', name: 'test', version: '1.0.0', profile: 'core', functions: fnNames.map((name) => ({ name })), capabilities: [] };
  const bodies = functions.map((f) => {
    const locals = f.locals ? [1, ...u32(f.locals), 0x7f] : [0];
    const body = [...locals, ...f.code.flat(Infinity), 0x0b];
    return [...u32(body.length), ...body];
  });
  const exports = [[...str('memory'), 0x02, 0x00]];
  const importedFuncs = imports.filter((imp) => typeof imp === 'string' || !imp.desc || imp.desc[0] === 0x00).length;
  functions.forEach((f, i) => { if (f.export) exports.push([...str(f.export), 0x00, ...u32(importedFuncs + i)]); });
  for (const [name, kind, index] of extraExports) exports.push([...str(name), kind, ...u32(index)]);
  const dataSegs = data.map(([offset, bytes]) => [0x00, 0x41, ...s32(offset), 0x0b, ...u32(bytes.length), ...bytes]);
  const metaBytes = [...(metadataBytes ?? Buffer.from(JSON.stringify(meta)))];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...part(1, vec(TYPES)),
    ...section(2, vec(importEntries)),
    ...section(3, vec(functions.map((f) => u32(f.type ?? 2)))),
    ...part(4, tables.length ? vec(tables.map((t) => (t.max === undefined ? [0x70, 0x00, ...u32(t.min)] : [0x70, 0x01, ...u32(t.min), ...u32(t.max)]))) : null),
    ...part(5, [1, 0x00, ...u32(memoryPages)]),
    ...part(6, [1, 0x7f, 0x01, 0x41, 0x00, 0x0b]), // global 0: mut i32 = 0
    ...section(7, vec(exports)),
    ...section(10, vec(bodies)),
    ...part(11, dataSegs.length ? vec(dataSegs) : null),
    ...section(0, [...str('pabi'), ...metaBytes]),
  ];
  return new Uint8Array(bytes);
}

const g = op;
// A plugin with the functions most tests use.
export function ioPlugin(extra = {}) {
  return buildPlugin({
    data: [[0, [...Buffer.from('bad input')]]],
    functions: [
      // echo: input_read(1024, 0, len); output_write(1024, len)
      { export: 'pabi_fn_echo', code: [g.i32(1024), g.i32(0), g.localGet(0), g.call(IMP.input_read), g.drop, g.i32(1024), g.localGet(0), g.call(IMP.output_write), g.drop, g.i32(0)] },
      // status: returns the i32 of its input
      { export: 'pabi_fn_status', code: [g.i32(16), g.i32(0), g.i32(4), g.call(IMP.input_read), g.drop, g.i32(16), g.load] },
      // fail: writes output, then the message "bad input", returns 1
      { export: 'pabi_fn_fail', code: [g.i32(0), g.i32(3), g.call(IMP.output_write), g.drop, g.i32(0), g.i32(9), g.call(IMP.error_write), g.drop, g.i32(1)] },
      // range: input_read with dst = 0xFFFFFFF0, len = 0x20 (wraps to 0x10)
      { export: 'pabi_fn_wrap', code: [g.i32(0xfffffff0), g.i32(0), g.i32(0x20), g.call(IMP.input_read), g.drop, g.i32(0)] },
      // count: counts calls on this instance, outputs u32
      { export: 'pabi_fn_count', code: [g.globalGet(0), g.i32(1), g.add, g.globalSet(0), g.i32(1024), g.globalGet(0), g.store, g.i32(1024), g.i32(4), g.call(IMP.output_write), g.drop, g.i32(0)] },
      { export: 'pabi_fn_trap', code: [g.unreachable, g.i32(0)] },
      // spin: loop forever
      { export: 'pabi_fn_spin', code: [[0x03, 0x40, 0x0c, 0x00, 0x0b], g.i32(0)] },
      // grow: grow by 16 pages until refused, then return 4
      { export: 'pabi_fn_grow', code: [[0x03, 0x40], g.i32(16), g.memoryGrow, g.i32(0), [0x4e], [0x0d, 0x00], [0x0b], g.i32(4)] },
      // growtrap: same, then trap
      { export: 'pabi_fn_growtrap', code: [[0x03, 0x40], g.i32(16), g.memoryGrow, g.i32(0), [0x4e], [0x0d, 0x00], [0x0b], g.unreachable, g.i32(0)] },
      // flood: output_write(0, 65536) forever
      { export: 'pabi_fn_flood', code: [[0x03, 0x40], g.i32(0), g.i32(65536), g.call(IMP.output_write), g.drop, [0x0c, 0x00], [0x0b], g.i32(0)] },
      // bigerror: error_write(0, 70000) → output nothing, return code as status 64 when -1
      { export: 'pabi_fn_bigerror', code: [g.i32(0), g.i32(70000), g.call(IMP.error_write), g.i32(-1), [0x46], [0x04, 0x7f], g.i32(64), [0x05], g.i32(3), [0x0b]] },
      // recurse: calls itself forever
      { export: 'pabi_fn_recurse', code: [g.localGet(0), g.call(4 + 11), g.i32(1), g.add] },
      // loglevel: log(level from input, 0, 9) as output
      { export: 'pabi_fn_loglevel', code: [g.i32(1024), g.i32(16), g.i32(0), g.i32(4), g.call(IMP.input_read), g.drop, g.i32(16), g.load, g.i32(0), g.i32(9), g.call(IMP.log), g.store, g.i32(1024), g.i32(4), g.call(IMP.output_write), g.drop, g.i32(0)] },
    ],
    ...extra,
  });
}

// ABI 1.1 host calls.
const sub = [0x6b];
// Imports: input_read 0, output_write 1, error_write 2, log 3, host_call 4, reply_read 5.
const HC = 4;
const RR = 5;
const IMPORTS = ['input_read', 'output_write', 'error_write', 'log', { name: 'host_call', type: 6 }, { name: 'reply_read', type: 0 }];

// `call`: the input is offset u32, len u32, name_len u32, name, request
// (as in fixtures/host-conformance/host-calls.wat). It makes the host call,
// reads up to `len` reply bytes from `offset`, and outputs what host_call
// returned (i32), what reply_read returned (i32) and the bytes read.
const CALL = [
  op.i32(0x1000), op.i32(0), op.localGet(0), op.call(0), op.drop,
  op.i32(0x8000),
  op.i32(0x100c), op.i32(0x1008), op.load,
  op.i32(0x100c), op.i32(0x1008), op.load, op.add,
  op.localGet(0), op.i32(12), op.i32(0x1008), op.load, op.add, sub,
  op.call(HC),
  op.store,
  op.i32(0x8004), op.i32(0x8008), op.i32(0x1000), op.load, op.i32(0x1004), op.load, op.call(RR), op.store,
  op.i32(0x8000), op.i32(8), op.i32(0x8004), op.load, op.add, op.call(1), op.drop,
  op.i32(0),
];
// host_call("kv.get", "apple"), its result dropped.
const GET_APPLE = [op.i32(0x100), op.i32(6), op.i32(0x110), op.i32(5), op.call(HC), op.drop];
// Stores what host_call("kv.init", "apple") returns at `at`.
const INIT_AT = (at) => [op.i32(at), op.i32(0x120), op.i32(7), op.i32(0x110), op.i32(5), op.call(HC), op.store];

const DECLARED = [
  { name: 'kv.get', required: false },
  { name: 'kv.init', required: false },
  { name: 'kv.big', required: false },
  { name: 'kv.slow', required: false },
];

/**
 * A 1.1 plugin named `name` that declares `hostCalls`. Functions: `call`
 * (above); `seq`, which first calls kv.get with "apple" and then does what
 * `call` does, so that the reply of an earlier host call is there to be
 * replaced; `count`, a counter of calls on the instance; `initcode`, what
 * host_call("kv.init") returned in _initialize and in pabi_init (two
 * i32). pabi_state_save outputs what host_call returned in its phase.
 */
export function hcPlugin({ name = 'hc', hostCalls = DECLARED, abi = '1.1', pages = 3, profile = 'core', capabilities = [] } = {}) {
  const fns = ['call', 'seq', 'count', 'initcode'];
  return buildPlugin({
    imports: IMPORTS,
    memoryPages: pages,
    data: [[0x100, [...Buffer.from('kv.get')]], [0x110, [...Buffer.from('apple')]], [0x120, [...Buffer.from('kv.init')]]],
    metadata: { abi, name, version: '3.4.5', profile, functions: fns.map((n) => ({ name: n })), capabilities, host_calls: hostCalls },
    functions: [
      { export: 'pabi_fn_call', code: CALL },
      { export: 'pabi_fn_seq', code: [GET_APPLE, CALL] },
      { export: 'pabi_fn_count', code: [op.globalGet(0), op.i32(1), op.add, op.globalSet(0), op.i32(0x300), op.globalGet(0), op.store, op.i32(0x300), op.i32(4), op.call(1), op.drop, op.i32(0)] },
      { export: 'pabi_fn_initcode', code: [op.i32(0x200), op.i32(8), op.call(1), op.drop, op.i32(0)] },
      { export: '_initialize', type: 3, code: INIT_AT(0x200) },
      { export: 'pabi_init', code: [INIT_AT(0x204), op.i32(0)] },
      { export: 'pabi_state_save', type: 9, code: [INIT_AT(0x208), op.i32(0x208), op.i32(4), op.call(1), op.drop, op.i32(0)] },
      { export: 'pabi_state_load', code: [op.i32(0)] },
    ],
  });
}

// The input of `call` and `seq` of hcPlugin.
export function hcInput(name, request = '', { offset = 0, len = 256 } = {}) {
  const n = Buffer.from(name);
  const head = Buffer.alloc(12);
  head.writeUInt32LE(offset, 0);
  head.writeUInt32LE(len, 4);
  head.writeUInt32LE(n.length, 8);
  return new Uint8Array(Buffer.concat([head, n, Buffer.from(request)]));
}
