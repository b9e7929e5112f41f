// @ts-check
// Reading the WebAssembly binary format, as far as a pabi host needs it:
// the section walk of host-guide section 2, the import, export, type,
// function and memory sections for the static checks of section 5, and a
// decoder of function bodies that refuses instructions outside the
// pabi-1.0 feature profile (MOD-2). Nothing here changes a module; the
// host's rewrite is rewrite.js.

export class BinaryError extends Error {
  /**
   * @param {string} message
   * @param {string} [clause] the clause the bytes break
   */
  constructor(message, clause = 'MOD-1') {
    super(message);
    this.clause = clause;
    // Set for an opcode no proposal defines (check.js tells it from V8's own limits).
    this.unknownOpcode = false;
  }
}

export class Reader {
  constructor(bytes, pos = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }
  eof() { return this.pos >= this.end; }
  byte() {
    if (this.pos >= this.end) throw new BinaryError('unexpected end of section');
    return this.bytes[this.pos++];
  }
  u32() {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) {
        if (result > 0xffffffff) throw new BinaryError('LEB128 u32 out of range');
        return result;
      }
      shift += 7;
    }
    throw new BinaryError('LEB128 u32 longer than 5 bytes');
  }
  // An unsigned LEB128 of up to 64 bits, as a Number (exact below 2^53):
  // the limits of a 64-bit memory, read only to be refused (MOD-4).
  u64() {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result += BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return Number(result);
      shift += 7n;
    }
    throw new BinaryError('LEB128 u64 longer than 10 bytes');
  }
  // Signed or unsigned LEB128 of at most maxBytes bytes, value ignored.
  skipLeb(maxBytes) {
    for (let i = 0; i < maxBytes; i++) {
      if ((this.byte() & 0x80) === 0) return;
    }
    throw new BinaryError('LEB128 too long');
  }
  bytesN(n) {
    if (this.pos + n > this.end) throw new BinaryError('unexpected end of section');
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  // Names are UTF-8 (MOD-1: a module with another name is not valid wasm).
  name() {
    const n = this.u32();
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.bytesN(n));
    } catch (e) {
      if (e instanceof BinaryError) throw e;
      throw new BinaryError('a name is not valid UTF-8');
    }
  }
}

const MAGIC = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

// host-guide section 2: walk the sections without an engine.
export function walkSections(bytes) {
  if (bytes.length < 8 || !MAGIC.every((b, i) => bytes[i] === b)) {
    throw new BinaryError('not a WebAssembly core module (bad magic or version: a text file, a component or other bytes)', 'MOD-1');
  }
  const sections = [];
  const r = new Reader(bytes, 8);
  while (!r.eof()) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const bodyStart = r.pos;
    if (bodyStart + size > bytes.length) throw new BinaryError(`section ${id} at byte ${start} runs past the end of the module`, 'MOD-1');
    const section = { id, start, bodyStart, end: bodyStart + size };
    if (id === 0) {
      const body = new Reader(bytes, bodyStart, section.end);
      section.name = body.name();
      section.payload = bytes.subarray(body.pos, section.end);
    }
    sections.push(section);
    r.pos = section.end;
  }
  return sections;
}

const VALTYPES = new Map([[0x7f, 'i32'], [0x7e, 'i64'], [0x7d, 'f32'], [0x7c, 'f64'], [0x7b, 'v128'], [0x70, 'funcref'], [0x6f, 'externref']]);

function valtype(r) {
  const b = r.byte();
  const t = VALTYPES.get(b);
  if (!t) throw new BinaryError(`value type 0x${b.toString(16)} is outside the pabi-1.0 feature profile`, 'MOD-2');
  return t;
}

// Limits: flag 0x01 a maximum, 0x02 shared (threads), 0x04 64-bit
// (memory64). A shared or 64-bit memory is recorded, not refused here: it
// breaks MOD-4 as well as the profile, and HOST-1 has the refusal cite
// MOD-4, the more specific clause, which the static checks do (check.js).
// A shared or 64-bit table, and any other flag (custom page sizes), is only
// outside the profile (MOD-2).
function limits(r, what) {
  const flags = r.byte();
  const memory = what === 'memory';
  if (!memory && flags & 0x02) throw new BinaryError(`shared ${what} (threads) is outside the pabi-1.0 feature profile`, 'MOD-2');
  if (!memory && flags & 0x04) throw new BinaryError(`64-bit ${what} is outside the pabi-1.0 feature profile`, 'MOD-2');
  if (flags & ~0x07) throw new BinaryError(`${what} limits flags 0x${flags.toString(16)} are outside the pabi-1.0 feature profile`, 'MOD-2');
  const is64 = (flags & 0x04) !== 0;
  const read = () => (is64 ? r.u64() : r.u32());
  const min = read();
  const max = flags & 1 ? read() : null;
  return memory ? { min, max, shared: (flags & 0x02) !== 0, is64 } : { min, max };
}

// Parses what the static checks need. Validation proper is left to the
// engine (WebAssembly.validate), run after this. `sections` is the walk of
// walkSections, when the caller has it already.
export function parseModule(bytes, sections = walkSections(bytes)) {
  const m = {
    sections, types: [], imports: [], funcTypes: [], tables: [], memories: [], exports: [],
    globals: 0, hasStart: false, importedFuncs: 0, customs: sections.filter((s) => s.id === 0),
  };
  for (const s of sections) {
    const r = new Reader(bytes, s.bodyStart, s.end);
    switch (s.id) {
      case 1: {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const form = r.byte();
          if (form !== 0x60) throw new BinaryError(`type form 0x${form.toString(16)} (GC) is outside the pabi-1.0 feature profile`, 'MOD-2');
          const params = Array.from({ length: r.u32() }, () => valtype(r));
          const results = Array.from({ length: r.u32() }, () => valtype(r));
          m.types.push({ params, results });
        }
        break;
      }
      case 2: {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const module = r.name();
          const name = r.name();
          const kind = r.byte();
          const imp = { module, name, kind: ['func', 'table', 'memory', 'global', 'tag'][kind] ?? `kind ${kind}` };
          if (kind === 0) { imp.type = r.u32(); m.funcTypes.push(imp.type); m.importedFuncs++; }
          else if (kind === 1) { valtype(r); limits(r, 'table'); }
          else if (kind === 2) { imp.limits = limits(r, 'memory'); m.memories.push({ imported: true, ...imp.limits }); }
          else if (kind === 3) { valtype(r); r.byte(); }
          else if (kind === 4) { r.byte(); r.u32(); }
          else throw new BinaryError(`unknown import kind ${kind}`, 'MOD-1');
          m.imports.push(imp);
        }
        break;
      }
      case 3: {
        const n = r.u32();
        for (let i = 0; i < n; i++) m.funcTypes.push(r.u32());
        break;
      }
      case 4: {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          if (r.bytes[r.pos] === 0x40) throw new BinaryError('table with an initializer expression is outside the pabi-1.0 feature profile', 'MOD-2');
          const reftype = r.bytes[r.pos];
          valtype(r);
          m.tables.push({ reftype, ...limits(r, 'table') });
        }
        break;
      }
      case 5: {
        const n = r.u32();
        for (let i = 0; i < n; i++) m.memories.push({ imported: false, ...limits(r, 'memory'), section: s });
        break;
      }
      case 6: m.globals = r.u32(); break;
      case 7: {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const start = r.pos;
          const name = r.name();
          const kind = r.byte();
          const index = r.u32();
          m.exports.push({ name, kind: ['func', 'table', 'memory', 'global', 'tag'][kind] ?? `kind ${kind}`, index, start, end: r.pos });
        }
        break;
      }
      case 8: m.hasStart = true; break;
      case 13: throw new BinaryError('a tag section (exception handling) is outside the pabi-1.0 feature profile', 'MOD-2');
      default: break;
    }
  }
  m.funcType = (index) => m.types[m.funcTypes[index]];
  return m;
}

export function sig(type) {
  if (!type) return '?';
  return `(${type.params.join(', ')}) -> (${type.results.join(', ')})`;
}

// ---------------------------------------------------------------------------
// Function bodies: a decoder of the WebAssembly 2.0 instruction set. It finds
// every `memory.grow` (to rewrite it) and refuses every opcode of a proposal
// outside the profile (threads, tail calls, exceptions, GC, typed function
// references, relaxed SIMD). Extended constants appear only in constant
// expressions, which checkConstExprs reads.

// Opcodes that a proposal outside the profile defines: a body using one
// is outside the profile (MOD-2) even where V8, lacking the proposal, reads
// it as malformed (HOST-1). Any other unknown opcode is malformed bytes.
/** @type {Map<number, string>} */
const PROPOSAL_OPS = new Map(/** @type {[number, string][]} */ ([
  ...[0x06, 0x07, 0x08, 0x09, 0x0a, 0x18, 0x19, 0x1f].map((op) => [op, 'exception handling']),
  [0x12, 'tail calls'], [0x13, 'tail calls'], [0x15, 'tail calls'],
  ...[0x14, 0xd4, 0xd5, 0xd6].map((op) => [op, 'typed function references']),
  [0xd3, 'GC'], [0xfb, 'GC'],
  [0xfe, 'threads'],
]));

const NO_IMM = new Set([
  0x00, 0x01, 0x0f, 0x1a, 0x1b, 0xd1,
]);
for (let op = 0x45; op <= 0xc4; op++) NO_IMM.add(op);
const MEMARG = new Set();
for (let op = 0x28; op <= 0x3e; op++) MEMARG.add(op);

function blocktype(r) {
  const b = r.bytes[r.pos];
  if (b === 0x40 || VALTYPES.has(b)) { r.pos++; return; }
  r.skipLeb(5); // s33 type index
}

// Simd opcodes of WebAssembly 2.0 and their immediates.
function simdImmediate(sub, r, where) {
  if (sub <= 0x0b || sub === 0x5c || sub === 0x5d) { r.u32(); r.u32(); return; } // loads/stores: memarg
  if (sub === 0x0c || sub === 0x0d) { r.bytesN(16); return; } // v128.const, i8x16.shuffle
  if (sub >= 0x15 && sub <= 0x22) { r.byte(); return; } // extract/replace lane
  if (sub >= 0x54 && sub <= 0x5b) { r.u32(); r.u32(); r.byte(); return; } // load/store lane
  if (sub <= 0xff) {
    // WebAssembly 2.0 assigns 0x0e..0xff except a few gaps.
    const gaps = new Set([0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee]);
    if (!gaps.has(sub)) return;
  }
  throw new BinaryError(`${where}: SIMD opcode 0xfd ${sub} (relaxed SIMD or unknown) is outside the pabi-1.0 feature profile`, 'MOD-2');
}

// Scans one body's instructions; calls onGrow(offset) at each memory.grow
// and onRefFunc(index) at each ref.func.
export function scanBody(bytes, start, end, where, onGrow, onRefFunc) {
  const r = new Reader(bytes, start, end);
  const nLocals = r.u32();
  for (let i = 0; i < nLocals; i++) { r.u32(); valtype(r); }
  while (!r.eof()) {
    const at = r.pos;
    const op = r.byte();
    if (NO_IMM.has(op)) continue;
    if (MEMARG.has(op)) { r.u32(); r.u32(); continue; }
    switch (op) {
      case 0x02: case 0x03: case 0x04: blocktype(r); break;
      case 0x05: case 0x0b: break;
      case 0x0c: case 0x0d: r.u32(); break;
      case 0x0e: { const n = r.u32(); for (let i = 0; i <= n; i++) r.u32(); break; }
      case 0x10: r.u32(); break;
      case 0x11: r.u32(); r.u32(); break;
      case 0x1c: { const n = r.u32(); for (let i = 0; i < n; i++) valtype(r); break; }
      case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: r.u32(); break;
      case 0x3f: r.byte(); break;
      case 0x40: if (r.byte() !== 0) throw new BinaryError(`${where}: memory.grow of a second memory`, 'MOD-2'); onGrow?.(at); break;
      case 0x41: r.skipLeb(5); break;
      case 0x42: r.skipLeb(10); break;
      case 0x43: r.bytesN(4); break;
      case 0x44: r.bytesN(8); break;
      case 0xd0: valtype(r); break;
      case 0xd2: { const f = r.u32(); onRefFunc?.(f); break; }
      case 0xfc: {
        const sub = r.u32();
        if (sub <= 7) break; // saturating truncation
        if (sub === 8) { r.u32(); r.byte(); break; } // memory.init
        if (sub === 9) { r.u32(); break; } // data.drop
        if (sub === 10) { r.byte(); r.byte(); break; } // memory.copy
        if (sub === 11) { r.byte(); break; } // memory.fill
        if (sub === 12 || sub === 14) { r.u32(); r.u32(); break; } // table.init, table.copy
        if (sub === 13 || sub === 15 || sub === 16 || sub === 17) { r.u32(); break; }
        throw new BinaryError(`${where}: opcode 0xfc ${sub} is outside the pabi-1.0 feature profile`, 'MOD-2');
      }
      case 0xfd: simdImmediate(r.u32(), r, where); break;
      default: {
        const feature = PROPOSAL_OPS.get(op);
        if (feature) throw new BinaryError(`${where}: opcode 0x${op.toString(16)} at byte ${at} (${feature}) is outside the pabi-1.0 feature profile`, 'MOD-2');
        const e = new BinaryError(`${where}: unknown opcode 0x${op.toString(16)} at byte ${at}`, 'MOD-1');
        e.unknownOpcode = true;
        throw e;
      }
    }
  }
}

// Constant expressions (global initialisers, element and data segment
// offsets, element expressions) may hold only the instructions of
// WebAssembly 2.0: `*.const`, `ref.null`, `ref.func`, `global.get`. The
// arithmetic of extended constant expressions, or the GC instructions, are
// outside the profile; V8 without the feature reads them as malformed
// (MOD-1), but HOST-1 has the refusal cite MOD-2, so they are found here,
// before V8 sees the module. Bytes that are malformed in every version are
// left to V8 (MOD-1): the scan stops at them without a finding.
const EXTENDED_CONST = new Map([
  [0x6a, 'i32.add'], [0x6b, 'i32.sub'], [0x6c, 'i32.mul'], [0x7c, 'i64.add'], [0x7d, 'i64.sub'], [0x7e, 'i64.mul'],
]);

function constExpr(r, where) {
  for (;;) {
    const at = r.pos;
    const op = r.byte();
    switch (op) {
      case 0x0b: return;
      case 0x41: r.skipLeb(5); break;
      case 0x42: r.skipLeb(10); break;
      case 0x43: r.bytesN(4); break;
      case 0x44: r.bytesN(8); break;
      case 0x23: case 0xd2: r.u32(); break;
      case 0xd0: valtype(r); break;
      case 0xfd:
        if (r.u32() !== 12) throw new BinaryError(`${where}: a SIMD instruction other than v128.const in a constant expression`);
        r.bytesN(16);
        break;
      default:
        if (EXTENDED_CONST.has(op)) {
          throw new BinaryError(`${where}: ${EXTENDED_CONST.get(op)} at byte ${at} is an extended constant expression, outside the pabi-1.0 feature profile`, 'MOD-2');
        }
        if (op === 0xfb) throw new BinaryError(`${where}: a GC instruction at byte ${at} in a constant expression is outside the pabi-1.0 feature profile`, 'MOD-2');
        throw new BinaryError(`${where}: opcode 0x${op.toString(16)} at byte ${at} in a constant expression`);
    }
  }
}

export function checkConstExprs(bytes, m) {
  try {
    for (const s of m.sections) {
      const r = new Reader(bytes, s.bodyStart, s.end);
      if (s.id === 6) {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          valtype(r);
          r.byte(); // mutability
          constExpr(r, `the initialiser of global ${i}`);
        }
      } else if (s.id === 9) {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const where = `element segment ${i}`;
          const flags = r.u32();
          if (flags > 7) return; // malformed in every version: V8 says so
          if (flags === 2 || flags === 6) r.u32(); // table index
          if ((flags & 1) === 0) constExpr(r, `the offset of ${where}`);
          const expressions = (flags & 4) !== 0;
          if (flags & 3) {
            if (expressions) valtype(r); // reftype
            else r.byte(); // elemkind
          }
          const count = r.u32();
          for (let k = 0; k < count; k++) {
            if (expressions) constExpr(r, `expression ${k} of ${where}`);
            else r.u32();
          }
        }
      } else if (s.id === 11) {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const flags = r.u32();
          if (flags > 2) return;
          if (flags === 2) r.u32(); // memory index
          if (flags !== 1) constExpr(r, `the offset of data segment ${i}`);
          r.bytesN(r.u32());
        }
      }
    }
  } catch (e) {
    if (e instanceof BinaryError && e.clause === 'MOD-1') return;
    throw e;
  }
}

export function codeBodies(bytes, m, maxBodies = Infinity) {
  const s = m.sections.find((x) => x.id === 10);
  if (!s) return [];
  const r = new Reader(bytes, s.bodyStart, s.end);
  const n = r.u32();
  // The count first: one object per body is what a compile bomb would make
  // the host allocate (LIM-12).
  if (n > maxBodies) return { length: n };
  const bodies = [];
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    if (r.pos + size > s.end) throw new BinaryError(`the body of function ${m.importedFuncs + i} runs past the end of the code section`);
    bodies.push({ start: r.pos, end: r.pos + size });
    r.pos += size;
  }
  return bodies;
}

// Checks every body against the profile (MOD-2) and records, for the
// rewrite, where each body's memory.grow instructions are (m.grows) and
// which functions ref.func names in code (m.refFuncs).
export function checkFeatures(bytes, m) {
  m.bodies = codeBodies(bytes, m);
  m.grows = [];
  m.refFuncs = new Set();
  m.bodies.forEach((b, i) => {
    const grows = [];
    scanBody(bytes, b.start, b.end, `function ${m.importedFuncs + i}`, (at) => grows.push(at), (f) => m.refFuncs.add(f));
    m.grows.push(grows);
  });
}
