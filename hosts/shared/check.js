// The static checks of HOST-1, in the order of host-guide sections 2 to 6.
// Nothing here compiles or runs plugin code.

import { BinaryError, Reader, walkSections, parseModule, checkFeatures, checkConstExprs, codeBodies, sig } from './reader.js';
import { PabiError, KINDS } from './errors.js';

// The newest ABI this host implements. An embedder may offer an older
// minor instead (CALL-9): `abi` of checkPlugin, `options.abi` of loadPlugin.
export const HOST_ABI = { major: 1, minor: 1 };
export const HOST_ABI_TEXT = `${HOST_ABI.major}.${HOST_ABI.minor}`;
// Every version this host can offer (VER-2: a 1.1 host serves 1.0 plugins
// exactly as a 1.0 host; CALL-9: it can also refuse 1.1 ones).
export const ABI_VERSIONS = ['1.0', '1.1'];

// Every host function of every 1.x version, with its Since (IMP-2, IMP-3,
// IMP-4): a plugin declaring 1.0 may not import the 1.1 ones, and a host
// offering 1.0 (CALL-9) does not provide them.
export const PABI_FUNCTIONS = {
  input_read: { params: ['i32', 'i32', 'i32'], results: ['i32'], since: [1, 0] },
  output_write: { params: ['i32', 'i32'], results: ['i32'], since: [1, 0] },
  error_write: { params: ['i32', 'i32'], results: ['i32'], since: [1, 0] },
  log: { params: ['i32', 'i32', 'i32'], results: ['i32'], since: [1, 0] },
  host_call: { params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'], since: [1, 1] },
  reply_read: { params: ['i32', 'i32', 'i32'], results: ['i32'], since: [1, 1] },
};

// VER-9: the metadata fields newer than 1.0 (abi.md, the table under
// META-8), by their top-level key. A plugin may use only those of the
// version it declares.
const METADATA_SINCE = { host_calls: [1, 1] };

// CALL-2: a namespace and a name, two to four parts of [a-z][a-z0-9_]{0,31}.
export const HOST_CALL_NAME = /^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){1,3}$/;

const newer = (since, major, minor) => since[0] === major && since[1] > minor;

// WASI-11: the type preview1 gives each of its functions (abi.md, the
// table under WASI-11), as `PARAMS -> RESULTS`. V8 links a JavaScript
// function to any import by name alone, so a mistyped import would reach
// this host's implementation with arguments it does not expect: it is
// refused at load instead.
const WASI_TYPE_TEXT = {
  args_get: 'i32 i32 -> i32',
  args_sizes_get: 'i32 i32 -> i32',
  environ_get: 'i32 i32 -> i32',
  environ_sizes_get: 'i32 i32 -> i32',
  clock_res_get: 'i32 i32 -> i32',
  clock_time_get: 'i32 i64 i32 -> i32',
  fd_advise: 'i32 i64 i64 i32 -> i32',
  fd_allocate: 'i32 i64 i64 -> i32',
  fd_close: 'i32 -> i32',
  fd_datasync: 'i32 -> i32',
  fd_fdstat_get: 'i32 i32 -> i32',
  fd_fdstat_set_flags: 'i32 i32 -> i32',
  fd_fdstat_set_rights: 'i32 i64 i64 -> i32',
  fd_filestat_get: 'i32 i32 -> i32',
  fd_filestat_set_size: 'i32 i64 -> i32',
  fd_filestat_set_times: 'i32 i64 i64 i32 -> i32',
  fd_pread: 'i32 i32 i32 i64 i32 -> i32',
  fd_prestat_get: 'i32 i32 -> i32',
  fd_prestat_dir_name: 'i32 i32 i32 -> i32',
  fd_pwrite: 'i32 i32 i32 i64 i32 -> i32',
  fd_read: 'i32 i32 i32 i32 -> i32',
  fd_readdir: 'i32 i32 i32 i64 i32 -> i32',
  fd_renumber: 'i32 i32 -> i32',
  fd_seek: 'i32 i64 i32 i32 -> i32',
  fd_sync: 'i32 -> i32',
  fd_tell: 'i32 i32 -> i32',
  fd_write: 'i32 i32 i32 i32 -> i32',
  path_create_directory: 'i32 i32 i32 -> i32',
  path_filestat_get: 'i32 i32 i32 i32 i32 -> i32',
  path_filestat_set_times: 'i32 i32 i32 i32 i64 i64 i32 -> i32',
  path_link: 'i32 i32 i32 i32 i32 i32 i32 -> i32',
  path_open: 'i32 i32 i32 i32 i32 i64 i64 i32 i32 -> i32',
  path_readlink: 'i32 i32 i32 i32 i32 i32 -> i32',
  path_remove_directory: 'i32 i32 i32 -> i32',
  path_rename: 'i32 i32 i32 i32 i32 i32 -> i32',
  path_symlink: 'i32 i32 i32 i32 i32 -> i32',
  path_unlink_file: 'i32 i32 i32 -> i32',
  poll_oneoff: 'i32 i32 i32 i32 -> i32',
  proc_exit: 'i32 ->',
  proc_raise: 'i32 -> i32',
  sched_yield: '-> i32',
  random_get: 'i32 i32 -> i32',
  sock_accept: 'i32 i32 i32 -> i32',
  sock_recv: 'i32 i32 i32 i32 i32 i32 -> i32',
  sock_send: 'i32 i32 i32 i32 i32 -> i32',
  sock_shutdown: 'i32 i32 -> i32',
};
export const WASI_TYPES = Object.fromEntries(Object.entries(WASI_TYPE_TEXT).map(([name, text]) => {
  const [params, results] = text.split('->').map((part) => part.trim().split(/\s+/).filter(Boolean));
  return [name, { params, results }];
}));

// WASI-2: the baseline, which this host serves itself (wasi.js). Every
// other preview1 function is outside it, and this host implements none of
// them (it has no file system).
export const WASI_BASELINE = new Set([
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_res_get', 'clock_time_get',
  'random_get', 'poll_oneoff', 'sched_yield', 'proc_exit', 'proc_raise', 'fd_write', 'fd_read', 'fd_close',
  'fd_seek', 'fd_tell', 'fd_sync', 'fd_datasync', 'fd_advise', 'fd_allocate', 'fd_fdstat_get',
  'fd_fdstat_set_flags', 'fd_fdstat_set_rights', 'fd_filestat_get', 'fd_prestat_get', 'fd_prestat_dir_name',
]);
export const WASI_FS = new Set([
  'fd_pread', 'fd_pwrite', 'fd_readdir', 'fd_renumber', 'fd_filestat_set_size', 'fd_filestat_set_times',
  'path_create_directory', 'path_filestat_get', 'path_filestat_set_times', 'path_link', 'path_open',
  'path_readlink', 'path_remove_directory', 'path_rename', 'path_symlink', 'path_unlink_file',
]);

const LIFECYCLE = {
  _initialize: { params: [], results: [] },
  pabi_init: { params: ['i32'], results: ['i32'] },
  pabi_shutdown: { params: [], results: ['i32'] },
  pabi_state_save: { params: [], results: ['i32'] },
  pabi_state_load: { params: ['i32'], results: ['i32'] },
};
const FN_TYPE = { params: ['i32'], results: ['i32'] };

// LIM-12 defaults; the host's limits (options.js, lifecycle.js) override them.
export const COMPILE_BUDGET = Object.freeze({
  maxModuleSize: 32 * 1024 * 1024,
  maxFunctions: 100000,
  maxFunctionSize: 1024 * 1024,
});

// How V8 words a refusal for one of its implementation limits.
const ENGINE_LIMIT = /exceeds internal limit|size .* > maximum|maximum function size|too many|too large|local count too large/i;

const moduleLimit = (detail) => new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] ${detail}` });

/**
 * The MODULE_LIMIT of a module of `size` bytes past the cap (LIM-12).
 * @param {number} size
 * @param {number} cap
 */
export const moduleSizeLimit = (size, cap) => moduleLimit(`the module is ${size} bytes, more than the cap of ${cap} bytes`);

// LIM-12 from the section headers alone: the function section's count and
// the code section's body sizes. It needs nothing else of the module, so
// that it comes first (VER-8) even for a module whose other sections use
// features of another version. `m` is the parsed module, or null when it
// could not be parsed; it only names the function in a message.
function checkBudget(bytes, sections, m, budget) {
  const maxFunctions = budget.maxFunctions ?? COMPILE_BUDGET.maxFunctions;
  const maxFunctionSize = budget.maxFunctionSize ?? COMPILE_BUDGET.maxFunctionSize;
  const fnSection = sections.find((x) => x.id === 3);
  const defined = fnSection ? new Reader(bytes, fnSection.bodyStart, fnSection.end).u32() : 0;
  if (defined > maxFunctions) throw moduleLimit(`the module defines ${defined} functions, more than the cap of ${maxFunctions}`);
  const bodies = codeBodies(bytes, { sections, importedFuncs: m?.importedFuncs ?? 0 }, maxFunctions);
  if (bodies.length > maxFunctions) throw moduleLimit(`the module has ${bodies.length} function bodies, more than the cap of ${maxFunctions}`);
  bodies.forEach((b, i) => {
    const size = b.end - b.start;
    if (size > maxFunctionSize) {
      const which = m ? `function ${m.importedFuncs + i}` : `code entry ${i}`;
      throw moduleLimit(`the body of ${which} is ${size} bytes, more than the cap of ${maxFunctionSize} bytes`);
    }
  });
}

const sameType = (a, b) => !!a && a.params.join() === b.params.join() && a.results.join() === b.results.join();

const invalid = (clause, detail) => new PabiError(KINDS.INVALID_MODULE, { clause, detail: `[${clause}] ${detail}` });

// META-2: every length and pattern of the schema counts code points, so
// the patterns carry the `u` flag (without it, a character outside the
// Basic Multilingual Plane is two UTF-16 units to `[^:]{0,1023}` and `.`).
const SEMVER = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/u;
const MEDIA = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+(;.*)?$/u;
const CAPABILITY = /^(clock|random|env:[A-Za-z_][A-Za-z0-9_]{0,127}|fs:\/[^:\u0000]{0,1023}:(ro|rw))$/u;
const STATUS_KEY = /^(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])$/u;
const chars = (s) => [...s].length;
const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

// META-2: the nesting depth of arrays and objects; the document itself is
// level 1.
export const MAX_DEPTH = 64;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

// META-2: what I-JSON (RFC 7493) adds to JSON, and the depth limit, which
// JSON.parse does not check: no lone surrogate (a raw one is not UTF-8 and
// never gets here; an escaped one does), no number outside binary64, no
// member name twice in one object, at most 64 levels. This is one pass
// over the text, without recursion, before JSON.parse, so that 30,000
// levels cost a counter and not a stack. It only follows strings,
// brackets, commas and numbers; malformed JSON is left to JSON.parse.
function checkIJson(text) {
  const stack = []; // per open container: a Set of member names, or null for an array
  let expectName = false;
  for (let i = 0; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // "
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      if (j >= text.length) return;
      let value;
      try { value = JSON.parse(text.slice(i, j + 1)); } catch { return; }
      if (LONE_SURROGATE.test(value)) throw invalid('META-2', `the metadata has a lone surrogate in the string ${text.slice(i, Math.min(j + 1, i + 80))} (I-JSON)`);
      const names = stack[stack.length - 1];
      if (expectName && names) {
        if (names.has(value)) throw invalid('META-2', `the metadata has the member name ${JSON.stringify(value)} twice in one object (I-JSON)`);
        names.add(value);
        expectName = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b || c === 0x5b) { // { [
      stack.push(c === 0x7b ? new Set() : null);
      if (stack.length > MAX_DEPTH) throw invalid('META-2', `the metadata nests arrays and objects more than ${MAX_DEPTH} levels deep`);
      expectName = c === 0x7b;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      stack.pop();
      expectName = false;
    } else if (c === 0x2c) { // ,
      expectName = stack[stack.length - 1] instanceof Set;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) { // a number
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (!m) return;
      if (!Number.isFinite(Number(m[0]))) throw invalid('META-2', `the metadata has the number ${m[0].slice(0, 40)}, outside the range of a binary64 (I-JSON)`);
      i += m[0].length;
      continue;
    }
    i++;
  }
}

// META-2: the payload as a JSON value: UTF-8 without a byte-order mark
// (I-JSON forbids one, and TextDecoder would drop it silently), I-JSON,
// then parsed. Shared by the envelope and the full check.
function parseDocument(payload) {
  if (payload[0] === 0xef && payload[1] === 0xbb && payload[2] === 0xbf) throw invalid('META-2', 'the metadata starts with a byte-order mark (I-JSON)');
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(payload);
  } catch {
    throw invalid('META-2', 'the metadata is not valid UTF-8');
  }
  checkIJson(text);
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw invalid('META-2', `the metadata is not valid JSON: ${e.message}`);
  }
  return doc;
}

// VER-7, VER-8: the envelope alone, read before anything that belongs to a
// version: every rule of META-2 (at most 65,536 bytes, UTF-8 I-JSON nesting
// at most 64 levels, an object), and a string `abi` of the form
// MAJOR.MINOR (VER-1). Whatever else a future version puts in the metadata
// is not looked at until the version is known to be this host's.
export const MAX_METADATA_BYTES = 65536;
export function readEnvelope(payload) {
  // The size first: the envelope belongs to no version, so a plugin of any
  // version gets no more than 64 KiB of JSON parsed before it is refused.
  if (payload.length > MAX_METADATA_BYTES) throw invalid('META-2', `the metadata is ${payload.length} bytes, more than 65,536`);
  const doc = parseDocument(payload);
  if (!isObject(doc)) throw invalid('META-2', 'the metadata is not a JSON object');
  if (typeof doc.abi !== 'string' || !/^(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})$/.test(doc.abi)) throw invalid('VER-1', `metadata: "abi" must be MAJOR.MINOR, not ${JSON.stringify(doc.abi)}`);
  return doc.abi;
}

// host-guide section 3.
export function checkMetadata(payload) {
  if (payload.length > MAX_METADATA_BYTES) throw invalid('META-2', `the metadata is ${payload.length} bytes, more than 65,536`);
  const doc = parseDocument(payload);
  const bad = (what) => invalid('META-3', `metadata: ${what}`);
  if (!isObject(doc)) throw bad('not a JSON object');
  const allowed = new Set(['abi', 'name', 'version', 'profile', 'functions', 'capabilities', 'description', 'statuses', 'host_calls']);
  for (const key of Object.keys(doc)) if (!allowed.has(key) && !key.startsWith('x-')) throw bad(`unknown key "${key}"`);
  for (const key of ['abi', 'name', 'version', 'profile', 'functions', 'capabilities']) if (!(key in doc)) throw bad(`missing key "${key}"`);
  if (typeof doc.abi !== 'string' || !/^(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})$/.test(doc.abi)) throw invalid('VER-1', `metadata: "abi" must be MAJOR.MINOR, not ${JSON.stringify(doc.abi)}`);
  if (typeof doc.name !== 'string' || !/^[a-z][a-z0-9-]{0,63}$/.test(doc.name)) throw bad(`"name" ${JSON.stringify(doc.name)} does not match [a-z][a-z0-9-]{0,63}`);
  if (typeof doc.version !== 'string' || chars(doc.version) > 128 || !SEMVER.test(doc.version)) throw bad(`"version" ${JSON.stringify(doc.version)} is not a semantic version`);
  if ('description' in doc && (typeof doc.description !== 'string' || chars(doc.description) > 4096)) throw bad('"description" must be a string of at most 4,096 characters');
  if (doc.profile !== 'core' && doc.profile !== 'wasi') throw bad('"profile" must be "core" or "wasi"');
  if (!Array.isArray(doc.functions) || doc.functions.length < 1 || doc.functions.length > 1024) throw bad('"functions" must be an array of 1 to 1,024 entries');
  const fnKeys = new Set(['name', 'summary', 'input', 'output', 'deterministic']);
  for (const f of doc.functions) {
    if (!isObject(f)) throw bad('each function must be an object');
    for (const key of Object.keys(f)) if (!fnKeys.has(key) && !key.startsWith('x-')) throw bad(`unknown key "${key}" in a function entry`);
    if (typeof f.name !== 'string' || !/^[a-z][a-z0-9_]{0,63}$/.test(f.name)) throw bad(`function name ${JSON.stringify(f.name)} does not match [a-z][a-z0-9_]{0,63}`);
    if ('summary' in f && (typeof f.summary !== 'string' || chars(f.summary) > 1024)) throw bad(`function "${f.name}": "summary" must be a string of at most 1,024 characters`);
    for (const k of ['input', 'output']) {
      if (k in f && (typeof f[k] !== 'string' || chars(f[k]) > 255 || !MEDIA.test(f[k]))) throw bad(`function "${f.name}": "${k}" must be a media type`);
    }
    if ('deterministic' in f && typeof f.deterministic !== 'boolean') throw bad(`function "${f.name}": "deterministic" must be a boolean`);
  }
  if (!Array.isArray(doc.capabilities) || doc.capabilities.length > 256) throw bad('"capabilities" must be an array of at most 256 strings');
  for (const c of doc.capabilities) if (typeof c !== 'string' || !CAPABILITY.test(c)) throw bad(`capability ${JSON.stringify(c)} is not valid`);
  if (new Set(doc.capabilities).size !== doc.capabilities.length) throw bad('"capabilities" must be unique');
  if ('statuses' in doc) {
    if (!isObject(doc.statuses)) throw invalid('META-8', 'metadata: "statuses" must be an object');
    for (const [k, v] of Object.entries(doc.statuses)) {
      if (!STATUS_KEY.test(k)) throw invalid('META-8', `metadata: status key "${k}" is not 64 to 127`);
      if (typeof v !== 'string' || chars(v) > 1024) throw invalid('META-8', `metadata: status "${k}" must be described by a string of at most 1,024 characters`);
    }
  }
  if ('host_calls' in doc) checkHostCallSchema(doc.host_calls);
  const names = doc.functions.map((f) => f.name);
  if (new Set(names).size !== names.length) throw invalid('META-5', 'metadata: function names are not unique');
  if (doc.profile === 'core' && doc.capabilities.length > 0) throw invalid('WASI-1', 'a core-profile plugin declares capabilities');
  checkGuestPaths(doc.capabilities);
  if ('host_calls' in doc) checkHostCallNames(doc.host_calls);
  return doc;
}

// META-3, CALL-1: `host_calls` under the schema (metadata.schema.json): at
// most 256 objects with `name` and `required`, optional `summary`,
// `request`, `reply` and `x-` keys. The names are looked at last: a
// document whose only fault is a name that is not `namespace.name` breaks
// CALL-2, the clause of the name's grammar, as the validator reports it;
// any other fault of the field is META-3.
function checkHostCallSchema(calls) {
  const bad = (what) => invalid('META-3', `metadata: ${what}`);
  if (!Array.isArray(calls) || calls.length > 256) throw bad('"host_calls" must be an array of at most 256 entries');
  const keys = new Set(['name', 'required', 'summary', 'request', 'reply']);
  calls.forEach((c, i) => {
    const at = `host call ${i}`;
    if (!isObject(c)) throw bad(`${at} must be an object`);
    for (const key of Object.keys(c)) if (!keys.has(key) && !key.startsWith('x-')) throw bad(`unknown key "${key}" in ${at}`);
    if (!('name' in c)) throw bad(`${at} has no "name"`);
    if (typeof c.required !== 'boolean') throw bad(`${at}: "required" must be true or false`);
    if ('summary' in c && (typeof c.summary !== 'string' || chars(c.summary) > 1024)) throw bad(`${at}: "summary" must be a string of at most 1,024 characters`);
    for (const k of ['request', 'reply']) {
      if (k in c && (typeof c[k] !== 'string' || chars(c[k]) > 255 || !MEDIA.test(c[k]))) throw bad(`${at}: "${k}" must be a media type`);
    }
  });
  for (const c of calls) {
    if (typeof c.name !== 'string' || !HOST_CALL_NAME.test(c.name)) {
      throw invalid('CALL-2', `metadata: the host-call name ${JSON.stringify(c.name)} is not a namespace and a name, two to four parts of [a-z][a-z0-9_]{0,31} separated by dots`);
    }
  }
}

// CALL-1: each name declared once; CALL-2: none in the reserved `pabi`
// namespace. In the order of the list, as the validator reports them.
function checkHostCallNames(calls) {
  const seen = new Set();
  for (const { name } of calls) {
    if (seen.has(name)) throw invalid('CALL-1', `metadata: the host call "${name}" is declared more than once`);
    seen.add(name);
    if (name.startsWith('pabi.')) throw invalid('CALL-2', `metadata: the host call "${name}" is in the namespace \`pabi\`, reserved for host calls a later ABI version defines`);
  }
}

// WASI-3: the guest path of an `fs:` capability is `/` or components each
// after one `/`, none empty, `.` or `..` (so no trailing `/`); and no two
// `fs:` capabilities name the same path or one inside the other, compared
// component by component (so /data and /database do not overlap): the outer
// grant reaches the inner directory's files by a path relative to itself,
// and the inner mode could not be enforced. Checked with the metadata,
// before the capabilities are compared with what the host allows (HOST-1).
export function checkGuestPaths(capabilities) {
  const paths = [];
  for (const c of capabilities) {
    if (!c.startsWith('fs:')) continue;
    const path = c.slice(3, c.lastIndexOf(':'));
    const parts = path === '/' ? [] : path.split('/').slice(1);
    const bad = parts.find((p) => p === '' || p === '.' || p === '..');
    if (bad !== undefined) {
      const why = bad === '' ? 'an empty component (a doubled or trailing `/`)' : `a \`${bad}\` component`;
      throw invalid('WASI-3', `capability "${c}": the guest path has ${why}`);
    }
    for (const [other, otherParts] of paths) {
      const [short, long] = parts.length <= otherParts.length ? [parts, otherParts] : [otherParts, parts];
      if (short.every((p, i) => long[i] === p)) {
        const why = parts.length === otherParts.length ? 'names the same guest path as' : 'overlaps, one guest path inside the other,';
        throw invalid('WASI-3', `capability "${c}" ${why} "${other}"`);
      }
    }
    paths.push([c, parts]);
  }
}

function rethrowInvalid(fn) {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BinaryError) throw invalid(e.clause, e.message);
    throw e;
  }
}

// MOD-4: exactly one memory, defined by the plugin, 32-bit and not shared.
// Each of these is also outside the profile (multi-memory, memory64,
// threads), but HOST-1 has the refusal cite MOD-4, the memory's own clause.
function checkMemoryShape(m) {
  if (m.memories.length !== 1) throw invalid('MOD-4', `the module has ${m.memories.length} memories, not exactly one`);
  const memory = m.memories[0];
  if (memory.imported) throw invalid('MOD-4', 'the memory is imported, not defined by the plugin');
  if (memory.is64) throw invalid('MOD-4', 'the memory is 64-bit (memory64), not 32-bit');
  if (memory.shared) throw invalid('MOD-4', 'the memory is shared (threads)');
}

/**
 * Checks a plugin's bytes statically (HOST-1) and returns what the host
 * needs: metadata, parsed module, function names, lifecycle exports, and
 * the declared host calls with whether each is offered.
 * `allow` is the list of capabilities the host's configuration allows;
 * `abi` the ABI version the host offers (CALL-9), one of ABI_VERSIONS;
 * `offers(name, plugin)` whether the application offers the host call
 * `name` to the plugin whose metadata name is `plugin` (CALL-5).
 * @param {Uint8Array} bytes
 * @param {{ allow?: string[], budget?: Partial<import('./options.js').Limits>, abi?: string, offers?: (name: string, plugin: string) => boolean }} [options]
 */
export function checkPlugin(bytes, { allow = [], budget = {}, abi: offered = HOST_ABI_TEXT, offers = () => false } = {}) {
  if (!ABI_VERSIONS.includes(offered)) throw new RangeError(`this host offers ABI ${ABI_VERSIONS.join(' or ')}, not ${offered}`);
  const [hostMajor, hostMinor] = offered.split('.').map(Number);
  // LIM-12: the module's size, before anything else is read.
  const maxModuleSize = budget.maxModuleSize ?? COMPILE_BUDGET.maxModuleSize;
  if (bytes.length > maxModuleSize) throw moduleSizeLimit(bytes.length, maxModuleSize);
  // VER-8 (1): the section headers, which every version shares.
  const sections = rethrowInvalid(() => walkSections(bytes));
  // The sections the checks read. A module this parse refuses (a feature
  // outside the profile in a type, import or table, malformed bytes) is
  // reported only after the budget and the version (VER-8, HOST-1): a
  // plugin of a future version may use what this version lacks.
  let m = null;
  let unreadable = null;
  try {
    m = parseModule(bytes, sections);
  } catch (e) {
    if (!(e instanceof BinaryError)) throw e;
    unreadable = e;
  }
  // LIM-12: the compile budget, from the section headers and the code
  // section's body sizes, first of all (VER-8), since it bounds every later
  // step.
  rethrowInvalid(() => checkBudget(bytes, sections, m, budget));

  // Section 2: exactly one `pabi` section (META-1).
  const pabi = sections.filter((s) => s.id === 0 && s.name === 'pabi');
  if (pabi.length !== 1) throw invalid('META-1', `the module has ${pabi.length} custom sections named "pabi", not exactly one`);
  // VER-8: the envelope and the version before anything of a version.
  const abi = readEnvelope(pabi[0].payload);
  // VER-4: the host's version is the one it offers (CALL-9).
  const who = `the plugin declares ABI ${abi}; this host implements ABI ${offered}`;

  // The pabi functions this host lacks, named by VER-4 in either refusal:
  // those of no version it knows, and, when it offers an older version
  // (CALL-9), those newer than that one. An import that is not a function
  // is not one of them: it breaks IMP-1, the more specific clause
  // (HOST-1), whatever its name.
  const provided = (name) => Object.hasOwn(PABI_FUNCTIONS, name) && !newer(PABI_FUNCTIONS[name].since, hostMajor, hostMinor);
  const lacking = (m?.imports ?? []).filter((i) => i.module === 'pabi' && i.kind === 'func' && !provided(i.name)).map((i) => `pabi.${i.name}`);

  // Section 4: the version (VER-2, VER-3, VER-4).
  const [major, minor] = abi.split('.').map(Number);
  if (major !== hostMajor || minor > hostMinor) {
    const extra = lacking.length ? `; the plugin imports ${lacking.map((n) => `\`${n}\``).join(', ')}, which this host does not provide` : '';
    throw new PabiError(KINDS.VERSION_MISMATCH, { clause: 'VER-3', detail: `${who}${extra}` });
  }
  // V8's verdict on the module, read before any INVALID_MODULE finding:
  // V8 refuses modules past its own implementation limits (those of the
  // JavaScript API: 100,000 exports, 7,654,321 bytes per body, 50,000
  // locals...), which the ABI allows. That is a module larger than this
  // host compiles (LIM-12), not an invalid one, and HOST-1 puts
  // MODULE_LIMIT first. V8 words a second memory as a limit of its own
  // ("memory count of 2 exceeds internal limit of 1"), but that is the
  // memory shape of MOD-4, found below.
  let why = null;
  if (!WebAssembly.validate(bytes)) {
    why = '';
    try { new WebAssembly.Module(bytes); } catch (e) { why = e.message; }
    if (ENGINE_LIMIT.test(why) && !/memory count/i.test(why)) throw moduleLimit(`the engine (V8) refuses the module past one of its limits: ${why}`);
  }
  // VER-8 (4), in its order: only now the rest of the metadata, under this
  // version's schema; then the Since of every item used (VER-9): the
  // imports (IMP-4), the exports (none is newer than 1.0), the metadata
  // fields and the capability kinds (every kind is 1.0, and the schema
  // refuses any other); then the module's features and shape, the imports
  // and the exports.
  const metadata = checkMetadata(pabi[0].payload);
  for (const imp of m?.imports ?? []) {
    const want = imp.module === 'pabi' && imp.kind === 'func' && Object.hasOwn(PABI_FUNCTIONS, imp.name) ? PABI_FUNCTIONS[imp.name] : null;
    if (want && newer(want.since, major, minor)) {
      throw invalid('IMP-4', `the import \`pabi.${imp.name}\` is Since ${want.since.join('.')}, newer than the declared ABI ${metadata.abi}`);
    }
  }
  for (const [field, since] of Object.entries(METADATA_SINCE)) {
    if (field in metadata && newer(since, major, minor)) {
      throw invalid('VER-9', `the metadata field \`${field}\` arrived in ABI ${since.join('.')}, but the plugin declares ABI ${metadata.abi}`);
    }
  }
  if (unreadable) throw invalid(unreadable.clause, unreadable.message);

  // Section 5: the memory, the feature profile and validation. HOST-1: one
  // construct that breaks several clauses is refused citing the most
  // specific, so the memory's shape (MOD-4) comes before the profile
  // (MOD-2), and the profile before validation (MOD-1): a construct of a
  // proposal V8 lacks is malformed bytes to V8 but outside the profile to
  // the ABI.
  checkMemoryShape(m);
  rethrowInvalid(() => checkConstExprs(bytes, m));
  if (why !== null) {
    try {
      checkFeatures(bytes, m);
    } catch (e) {
      if (e instanceof BinaryError && e.clause === 'MOD-2') throw invalid('MOD-2', e.message);
      if (!(e instanceof BinaryError)) throw e;
    }
    throw invalid('MOD-1', `the module does not validate: ${why}`);
  }
  try {
    checkFeatures(bytes, m);
  } catch (e) {
    // An opcode this decoder does not know, in a module V8 validated, is
    // one of a feature V8 has and the profile does not.
    if (e instanceof BinaryError && e.unknownOpcode) throw invalid('MOD-2', `${e.message}, outside the pabi-1.0 feature profile`);
    if (e instanceof BinaryError) throw invalid(e.clause, e.message);
    throw e;
  }
  if (m.hasStart) throw invalid('MOD-3', 'the module has a start section');

  // Imports (IMP-1..3, WASI-1, WASI-4, WASI-11, HOST-2); IMP-4 was judged
  // with the Since of the other items, above. An import that WASI-4 does
  // not allow is refused for that before its type is compared (WASI-11).
  if (lacking.length) {
    throw invalid('IMP-2', `the plugin imports ${lacking.map((n) => `\`${n}\``).join(', ')}, which this host (ABI ${offered}) does not provide; ${who}`);
  }
  const hasFs = metadata.capabilities.some((c) => c.startsWith('fs:'));
  // WASI-2: preview1 functions outside the baseline that the plugin may
  // import (WASI-4) but this host does not implement. The plugin is valid,
  // the host is smaller: UNSUPPORTED, after every INVALID_MODULE check and
  // before the capabilities (HOST-1).
  const unsupported = [];
  for (const imp of m.imports) {
    const full = `${imp.module}.${imp.name}`;
    if (imp.kind !== 'func') throw invalid('IMP-1', `the import \`${full}\` is a ${imp.kind}, not a function`);
    if (imp.module === 'pabi') {
      const want = PABI_FUNCTIONS[imp.name];
      const got = m.types[imp.type];
      if (!sameType(got, want)) throw invalid('IMP-3', `the import \`${full}\` has type ${sig(got)}, not ${sig(want)}`);
    } else if (imp.module === 'wasi_snapshot_preview1') {
      if (metadata.profile !== 'wasi') throw invalid('WASI-1', `a core-profile plugin imports \`${full}\``);
      if (!Object.hasOwn(WASI_TYPES, imp.name)) throw invalid('WASI-4', `the import \`${full}\` is not a preview1 function`);
      if (WASI_FS.has(imp.name) && !hasFs) throw invalid('WASI-4', `the import \`${full}\` needs an fs: capability, and the plugin declares none`);
      if (!WASI_BASELINE.has(imp.name) && !WASI_FS.has(imp.name)) throw invalid('WASI-4', `the import \`${full}\` is not allowed`);
      const want = WASI_TYPES[imp.name];
      const got = m.types[imp.type];
      if (!sameType(got, want)) throw invalid('WASI-11', `the import \`${full}\` has type ${sig(got)}, not preview1's ${sig(want)}`);
      if (!WASI_BASELINE.has(imp.name)) unsupported.push(full);
    } else {
      throw invalid('IMP-1', `the import \`${full}\` is from module "${imp.module}", not "pabi"`);
    }
  }

  // Exports (EXP-1..9, META-4).
  const functions = new Map();
  const lifecycle = new Set();
  let memoryExported = false;
  for (const ex of m.exports) {
    if (ex.name === 'memory') {
      if (ex.kind !== 'memory') throw invalid('EXP-1', `the export "memory" is a ${ex.kind}, not the memory`);
      memoryExported = true;
      continue;
    }
    if (ex.name === '_start') throw invalid('EXP-6', 'the plugin exports `_start`: it is a WASI command, not a reactor');
    if (ex.name in LIFECYCLE) {
      const t = ex.kind === 'func' ? m.funcType(ex.index) : null;
      if (!sameType(t, LIFECYCLE[ex.name])) throw invalid('EXP-5', `the export \`${ex.name}\` must be a function of type ${sig(LIFECYCLE[ex.name])}`);
      lifecycle.add(ex.name);
      continue;
    }
    if (ex.name.startsWith('pabi_fn_')) {
      const name = ex.name.slice(8);
      if (!/^[a-z][a-z0-9_]{0,63}$/.test(name)) throw invalid('EXP-4', `the plugin function name "${name}" does not match [a-z][a-z0-9_]{0,63}`);
      const t = ex.kind === 'func' ? m.funcType(ex.index) : null;
      if (!sameType(t, FN_TYPE)) throw invalid('EXP-3', `the export \`${ex.name}\` must be a function of type (i32) -> (i32)`);
      functions.set(name, ex.name);
      continue;
    }
    if (ex.name.startsWith('pabi_')) throw invalid('EXP-2', `the export \`${ex.name}\` uses the reserved prefix pabi_`);
  }
  if (!memoryExported) throw invalid('EXP-1', 'the memory is not exported as "memory"');
  if (functions.size === 0) throw invalid('EXP-8', 'the plugin exports no plugin function');
  if (lifecycle.has('pabi_state_save') !== lifecycle.has('pabi_state_load')) throw invalid('EXP-7', 'the plugin exports only one of pabi_state_save and pabi_state_load');
  const declared = new Set(metadata.functions.map((f) => f.name));
  for (const name of functions.keys()) if (!declared.has(name)) throw invalid('META-4', `the export pabi_fn_${name} is not listed in the metadata`);
  for (const name of declared) if (!functions.has(name)) throw invalid('META-4', `the metadata lists "${name}", which is not exported`);

  if (unsupported.length) {
    throw new PabiError(KINDS.UNSUPPORTED, {
      detail: `the plugin imports ${unsupported.map((n) => `\`${n}\``).join(', ')}, outside the WASI-2 baseline; this host does not implement ${unsupported.length === 1 ? 'it' : 'them'} (it has no file system)`,
    });
  }

  // Section 6: capabilities (WASI-5) and required host calls (CALL-5),
  // every one that is missing in one refusal.
  const allowed = new Set(allow);
  const missing = metadata.capabilities.filter((c) => !allowed.has(c));
  const hostCalls = new Map((metadata.host_calls ?? []).map((c) => [c.name, offers(c.name, metadata.name)]));
  const missingCalls = (metadata.host_calls ?? []).filter((c) => c.required && !hostCalls.get(c.name)).map((c) => c.name);
  if (missing.length || missingCalls.length) {
    throw new PabiError(KINDS.MISSING_CAPABILITY, {
      clause: missing.length ? 'WASI-5' : 'CALL-5',
      detail: [
        ...missing.map((c) => `the plugin declares capability "${c}", which this host does not allow`),
        ...missingCalls.map((n) => `the plugin requires the host call \`host_call:${n}\`, which this host does not offer to it`),
      ].join('; '),
    });
  }

  return { metadata, module: m, functions, lifecycle, granted: metadata.capabilities.slice(), hostCalls };
}
