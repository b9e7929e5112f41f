// @ts-check
// The rewrite that lets the host see and refuse `memory.grow` and cap the
// tables (LIM-1, LIM-2, LIM-8; see README.md), on a module that reader.js
// has read and the static checks (check.js) have accepted.

import { BinaryError, Reader } from './reader.js';

export function encodeU32(value) {
  const out = [];
  let v = value >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

function encodeName(text) {
  const bytes = new TextEncoder().encode(text);
  return [...encodeU32(bytes.length), ...bytes];
}

// V8 refuses a module with more exports than this (an implementation
// limit of the JavaScript API), so the rewrite must not add one past it.
export const ENGINE_MAX_EXPORTS = 100000;

// Exports the host uses; every other export has no meaning in the ABI
// (EXP-9), so the rewrite may drop one to make room for its own.
const MEANINGFUL = (name) => name === 'memory' || name === '_initialize' || name.startsWith('pabi_');

// Rewrites the module so that the engine enforces the host's caps, which
// V8 cannot do itself (it has no memory or table limiter):
//
// - The memory's maximum becomes the smaller of the plugin's own maximum
//   and the cap, so `memory.grow` past the cap returns -1 (LIM-1, LIM-2).
// - Each table's maximum becomes the smaller of its own and the table cap,
//   so `table.grow` past it returns -1 (LIM-8).
// - When the module has `memory.grow` instructions, each becomes a call of
//   a helper appended to the module, which sets an appended global to 1
//   when the growth would pass the cap and then runs the original
//   `memory.grow`. The global is exported, so the host can clear it before
//   a call and read it after a trap (LIM-2). A module without
//   `memory.grow` cannot be refused a growth and gets no helper.
//
// No existing index changes: the helper and the global are appended last,
// and the helper reuses the plugin's own (i32) -> (i32) type, which every
// plugin has (EXP-3, EXP-8). The export's name is one the plugin does not
// export; V8 refuses a duplicate name. At V8's export limit one export the
// ABI gives no meaning (EXP-9) makes way for it. Returns
// { bytes, refusedExport } (refusedExport null without the helper).
export function rewriteModule(bytes, m, { capPages, tableCap }) {
  const memory = m.memories[0];
  const max = memory.max === null ? capPages : Math.min(memory.max, capPages);
  const instrument = m.grows.some((g) => g.length > 0);
  const chunks = [bytes.subarray(0, 8)];
  const emit = (id, parts) => {
    const body = concat(parts);
    chunks.push(Uint8Array.from([id, ...encodeU32(body.length)]), body);
  };
  const tables = () => {
    const parts = [Uint8Array.from(encodeU32(m.tables.length))];
    for (const t of m.tables) {
      const tmax = t.max === null ? tableCap : Math.min(t.max, tableCap);
      parts.push(Uint8Array.from([t.reftype, 0x01, ...encodeU32(t.min), ...encodeU32(tmax)]));
    }
    return parts;
  };
  const memories = () => [Uint8Array.from([1, 0x01, ...encodeU32(memory.min), ...encodeU32(max)])];
  if (!instrument) {
    for (const s of m.sections) {
      if (s.id === 4) emit(4, tables());
      else if (s.id === 5) emit(5, memories());
      else chunks.push(bytes.subarray(s.start, s.end));
    }
    return { bytes: concat(chunks), refusedExport: null };
  }

  let typeIndex = m.types.findIndex((t) => t.params.join() === 'i32' && t.results.join() === 'i32');
  const addType = typeIndex < 0;
  if (addType) typeIndex = m.types.length;
  const funcIndex = m.funcTypes.length;
  const globalIndex = m.globals;
  const names = new Set(m.exports.map((e) => e.name));
  let refusedExport = '\u0000pabi-node:growth-refused';
  while (names.has(refusedExport)) refusedExport += '#';
  let exportsKept = m.exports;
  if (m.exports.length + 1 > ENGINE_MAX_EXPORTS) {
    const spare = m.exports.find((e) => !MEANINGFUL(e.name) && e.kind !== 'func')
      ?? m.exports.find((e) => !MEANINGFUL(e.name) && e.kind === 'func' && !m.refFuncs.has(e.index));
    if (!spare) {
      throw new BinaryError(`the module has ${m.exports.length} exports, and this host needs one more than V8's limit of ${ENGINE_MAX_EXPORTS} allows`, 'LIM-12');
    }
    exportsKept = m.exports.filter((e) => e !== spare);
  }

  const helper = Uint8Array.from([
    0x00, // no locals
    0x20, 0x00, 0xad, // local.get 0; i64.extend_i32_u
    0x3f, 0x00, 0xad, // memory.size; i64.extend_i32_u
    0x7c, // i64.add
    0x42, ...encodeS64(capPages), // i64.const cap
    0x56, // i64.gt_u
    0x04, 0x40, 0x41, 0x01, 0x24, ...encodeU32(globalIndex), 0x0b, // if; global.set 1; end
    0x20, 0x00, 0x40, 0x00, // local.get 0; memory.grow 0
    0x0b,
  ]);
  const call = Uint8Array.from([0x10, ...encodeU32(funcIndex)]);
  // Appends one entry to a vector section: new count, old entries, entry.
  const append = (s, entry) => {
    const r = new Reader(bytes, s.bodyStart, s.end);
    const n = r.u32();
    emit(s.id, [Uint8Array.from(encodeU32(n + 1)), bytes.subarray(r.pos, s.end), Uint8Array.from(entry)]);
  };
  const order = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
  let globalsDone = m.sections.some((s) => s.id === 6);
  for (const s of m.sections) {
    if (s.id !== 0 && !globalsDone && order.indexOf(s.id) > order.indexOf(6)) {
      emit(6, [Uint8Array.from([1, 0x7f, 0x01, 0x41, 0x00, 0x0b])]);
      globalsDone = true;
    }
    switch (s.id) {
      case 1: if (addType) append(s, [0x60, 1, 0x7f, 1, 0x7f]); else chunks.push(bytes.subarray(s.start, s.end)); break;
      case 3: append(s, encodeU32(typeIndex)); break;
      case 4: emit(4, tables()); break;
      case 5: emit(5, memories()); break;
      case 6: append(s, [0x7f, 0x01, 0x41, 0x00, 0x0b]); break;
      case 7: emit(7, [
        Uint8Array.from(encodeU32(exportsKept.length + 1)),
        ...exportsKept.map((e) => bytes.subarray(e.start, e.end)),
        Uint8Array.from([...encodeName(refusedExport), 0x03, ...encodeU32(globalIndex)]),
      ]); break;
      case 10: {
        const parts = [Uint8Array.from(encodeU32(m.bodies.length + 1))];
        m.bodies.forEach((b, i) => {
          const grows = m.grows[i];
          if (!grows.length) {
            parts.push(Uint8Array.from(encodeU32(b.end - b.start)), bytes.subarray(b.start, b.end));
            return;
          }
          const pieces = [];
          let pos = b.start;
          for (const at of grows) {
            pieces.push(bytes.subarray(pos, at), call);
            pos = at + 2;
          }
          pieces.push(bytes.subarray(pos, b.end));
          const body = concat(pieces);
          parts.push(Uint8Array.from(encodeU32(body.length)), body);
        });
        parts.push(Uint8Array.from(encodeU32(helper.length)), helper);
        emit(10, parts);
        break;
      }
      default:
        chunks.push(bytes.subarray(s.start, s.end));
    }
  }
  return { bytes: concat(chunks), refusedExport };
}

export function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function encodeS64(value) {
  // non-negative values below 2^31 only
  const out = [];
  let v = value;
  for (;;) {
    const b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v === 0 && (b & 0x40) === 0) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}
