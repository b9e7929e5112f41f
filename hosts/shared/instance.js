// The instance side of the host, shared by both platforms: the worker of
// each (Node's worker thread, a browser's Web Worker) holds at most one
// instance, made and called by handle(request). The main thread sends one
// request at a time and terminates the worker when a call passes its
// deadline (LIM-3). This file links the `pabi` functions (host-guide
// section 7, and `host_call` and `reply_read` of ABI 1.1) and, for the
// `wasi` profile, the baseline `wasi_snapshot_preview1` functions.
//
// A host call's handler belongs to the application, which lives in the
// main thread. `host_call` copies the name and the request out of plugin
// memory and hands them to the platform's `ask`, which blocks this thread
// until the main thread has run the handler. The plugin's call stays
// inside the import the whole time, so its deadline keeps running (CALL-7).

import { makeWasi, Exit } from './wasi.js';
import { Abort } from './abort.js';
import { KINDS } from './errors.js';

const MESSAGE_CAP = 65536;
// A zero-length `log` record costs no log text (LIM-11), so the text cap
// alone does not bound how many records a call makes; past this many the
// records are still accepted but only counted, never stored, so that a
// loop of empty records cannot fill the worker's memory.
const STORED_RECORDS = 1 << 20;

const EMPTY = new Uint8Array(0);

// A byte buffer that grows by doubling, up to `limit`: the output, the
// message, the log records and the partial lines of standard output and
// error each live in one of these instead of one object per write, so
// that millions of small writes cost bytes, not objects.
class Bytes {
  constructor() { this.reset(); }
  // Starting over from the shared empty array lets go of what the last
  // call grew, as a fresh array would, without allocating one for each
  // buffer that a call leaves empty.
  reset() { this.buf = EMPTY; this.len = 0; }
  push(view, limit = Infinity) {
    const need = this.len + view.length;
    if (need > this.buf.length) {
      let cap = Math.max(256, this.buf.length * 2);
      while (cap < need) cap *= 2;
      const grown = new Uint8Array(Math.max(need, Math.min(cap, limit)));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(view, this.len);
    this.len = need;
  }
  // The bytes so far, as a view that can be transferred to the main thread
  // without a copy; the buffer starts afresh.
  take() {
    const out = this.buf.subarray(0, this.len);
    this.reset();
    return out;
  }
}

// CALL-2: the longest host-call name, in bytes (four parts of 32 and three
// dots). A longer `host_call` name cannot be a declared one (CALL-3),
// whatever its bytes, so it is not decoded.
const MAX_HOST_CALL_NAME = 4 * 32 + 3;

/**
 * The instance of one worker. The platform gives:
 *   ask(name, request)  hands a host call to the main thread and blocks
 *                       until its answer, { code, reply }; throws an Abort
 *                       (HOST_FAILURE) when the answer does not come
 *   started()           says that the export starts now: the deadline
 *                       runs from here (LIM-3)
 *   entropy(view)       fills `view` with the platform's entropy (`random`)
 *   monotonicNs()       the platform's monotonic clock (WASI-9)
 *   resolutionNs()      the resolution of its real clocks (WASI-9), 1 ns if
 *                       not given
 * and gets handle(request), which answers one request, and
 * transfers(answer), the buffers of the answer to hand over rather than copy.
 */
export function makeInstance({ ask, started, entropy, monotonicNs, resolutionNs = () => 1n }) {
  // Per-instance and per-call state.
  let instance = null;
  let memory = null;
  let refused = null;
  // The host calls the plugin declares, each mapped to whether the
  // application offers it to this plugin (CALL-3, CALL-5).
  let hostCalls = new Map();
  // The caps of every call of the instance (lifecycle.js, load).
  let capPages = 0;
  const call = {
    phase: null, input: new Uint8Array(0), output: new Bytes(), message: new Bytes(), maxOutput: 0,
    // CALL-6: the reply of the latest host_call of this call; LIM-14: the request cap.
    reply: EMPTY, maxRequest: 0,
    // LIM-11: the log text of the call, `log` records and standard output
    // and error together, and what was dropped past the cap.
    logs: new Bytes(), records: 0, maxLog: 0, logBytes: 0, droppedRecords: 0, droppedBytes: 0, unstored: 0,
    pending: { 1: new Bytes(), 2: new Bytes() },
  };

  // A view of the whole memory, made again only when the memory has grown
  // (growing replaces the memory's ArrayBuffer), not on every access.
  let view = EMPTY;
  function bytes() {
    const buffer = memory.buffer;
    if (view.buffer !== buffer) view = new Uint8Array(buffer);
    return view;
  }

  // Also makes `view` current, for the function that checked.
  function check(name, ptr, len) {
    const size = bytes().length;
    if (ptr + len > size) {
      throw new Abort(KINDS.ABI_VIOLATION, {
        clause: 'MEM-3',
        detail: `[MEM-3] pabi.${name}: range (pointer ${ptr}, length ${len}) ends at ${ptr + len}, past the memory size ${size}`,
      });
    }
  }

  // Stores one record as [level u8][length u32 LE][text]; the main thread
  // decodes them after the call.
  const header = new Uint8Array(5);
  const headerView = new DataView(header.buffer);
  function record(level, bytes) {
    if (call.records >= STORED_RECORDS) { call.unstored++; return; }
    call.records++;
    header[0] = level;
    headerView.setUint32(1, bytes.length, true);
    call.logs.push(header);
    call.logs.push(bytes);
  }

  // WASI-8: standard output is logged at info, standard error at warn, one
  // record per line; a partial last line waits for the rest of its line or
  // for the end of the call. LIM-11: the bytes count against the call's log
  // cap, and those past it are dropped.
  function stdio(fd, view) {
    const take = Math.min(view.length, call.maxLog - call.logBytes);
    call.droppedBytes += view.length - take;
    call.logBytes += take;
    const part = view.subarray(0, take);
    const pending = call.pending[fd];
    let start = 0;
    for (let nl = part.indexOf(10); nl !== -1; nl = part.indexOf(10, start)) {
      if (pending.len) {
        pending.push(part.subarray(start, nl));
        record(fd === 1 ? 2 : 1, pending.take());
      } else {
        record(fd === 1 ? 2 : 1, part.subarray(start, nl));
      }
      start = nl + 1;
    }
    if (start < part.length) pending.push(part.subarray(start));
  }

  function flushStdio() {
    for (const fd of [1, 2]) if (call.pending[fd].len) record(fd === 1 ? 2 : 1, call.pending[fd].take());
  }

  const pabi = {
    input_read(dst, offset, len) {
      dst >>>= 0; offset >>>= 0; len >>>= 0;
      check('input_read', dst, len);
      const input = call.input;
      if (offset >= input.length) return 0;
      const n = Math.min(len, input.length - offset);
      view.set(n === input.length ? input : input.subarray(offset, offset + n), dst);
      return n;
    },
    output_write(src, len) {
      src >>>= 0; len >>>= 0;
      check('output_write', src, len);
      if (call.phase !== 'call' && call.phase !== 'pabi_state_save') return -3;
      if (call.output.len + len > call.maxOutput) {
        throw new Abort(KINDS.OUTPUT_LIMIT, { detail: `[LIM-5] the output would grow to ${call.output.len + len} bytes, past the limit of ${call.maxOutput}` });
      }
      if (len) call.output.push(view.subarray(src, src + len), call.maxOutput);
      return 0;
    },
    error_write(src, len) {
      src >>>= 0; len >>>= 0;
      check('error_write', src, len);
      if (call.phase === '_initialize') return -3;
      const take = Math.min(MESSAGE_CAP - call.message.len, len);
      if (take > 0) call.message.push(new Uint8Array(memory.buffer, src, take), MESSAGE_CAP);
      return take < len ? -1 : 0;
    },
    // HOST-7, LIM-11: the range first (MEM-3), then the level (E_INVALID),
    // then the cap (E_LIMIT), which drops the whole record.
    log(level, src, len) {
      level >>>= 0; src >>>= 0; len >>>= 0;
      check('log', src, len);
      if (level > 4) return -2;
      if (call.logBytes + len > call.maxLog) {
        call.droppedRecords++;
        call.droppedBytes += len;
        return -1;
      }
      call.logBytes += len;
      record(level, new Uint8Array(memory.buffer, src, len));
      return 0;
    },
  };

  // CALL-3: a name the plugin does not declare, or not UTF-8, shown in the
  // message as JSON text, cut short. SEC-3: its control characters are
  // escaped as escapeText (options.js) does, C1 and line separators too.
  const lossy = new TextDecoder();
  const strict = new TextDecoder('utf-8', { fatal: true });
  function undeclared(bytes) {
    const shown = JSON.stringify(lossy.decode(bytes.subarray(0, 200)))
      .replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    return new Abort(KINDS.ABI_VIOLATION, {
      clause: 'CALL-3',
      detail: `[CALL-3] pabi.host_call: ${shown}${bytes.length > 200 ? '…' : ''} is not a host call the plugin declares in its metadata`,
    });
  }

  pabi.host_call = (name, nameLen, req, reqLen) => {
    name >>>= 0; nameLen >>>= 0; req >>>= 0; reqLen >>>= 0;
    // MEM-3: both ranges before anything else, in every phase.
    check('host_call', name, nameLen);
    check('host_call', req, reqLen);
    // CALL-6: whatever happens next, the reply of an earlier host call is
    // gone; it stays empty unless a handler answers.
    call.reply = EMPTY;
    // CALL-3, before any handler runs and in every phase (the name is the
    // plugin's mistake wherever it calls).
    const nameBytes = new Uint8Array(memory.buffer, name, nameLen);
    let text = null;
    if (nameLen <= MAX_HOST_CALL_NAME) {
      try { text = strict.decode(nameBytes); } catch { text = null; }
    }
    if (text === null || !hostCalls.has(text)) throw undeclared(nameBytes);
    // HOST-8: host calls only in pabi_init and pabi_fn_*.
    if (call.phase !== 'call' && call.phase !== 'pabi_init') return -3;
    // CALL-5: an optional call the application does not offer to this plugin.
    if (!hostCalls.get(text)) return -5;
    // LIM-14: a request past the cap runs no handler.
    if (reqLen > call.maxRequest) return -1;
    // MEM-1: the request leaves plugin memory as a copy.
    const answer = ask(text, new Uint8Array(memory.buffer, req, reqLen).slice());
    call.reply = answer.reply;
    return answer.code;
  };

  // CALL-6: as input_read, over the current reply.
  pabi.reply_read = (dst, offset, len) => {
    dst >>>= 0; offset >>>= 0; len >>>= 0;
    check('reply_read', dst, len);
    const reply = call.reply;
    if (offset >= reply.length) return 0;
    const n = Math.min(len, reply.length - offset);
    new Uint8Array(memory.buffer, dst, n).set(reply.subarray(offset, offset + n));
    return n;
  };

  // A wasm stack overflow: V8 throws a RangeError, SpiderMonkey (Firefox) an
  // InternalError, neither a WebAssembly.RuntimeError.
  function isStackOverflow(e) {
    return (e instanceof RangeError && /call stack/i.test(e.message))
      || (e instanceof Error && e.name === 'InternalError' && /too much recursion/.test(e.message));
  }

  // ERR-9: the trap messages of V8 and of SpiderMonkey mapped to the trap
  // kinds. SpiderMonkey says "index out of bounds" for memory and "table
  // index out of bounds" for tables, "indirect call to null" where V8 has
  // one message for a null entry and a signature mismatch.
  function trapKind(e) {
    if (isStackOverflow(e)) return 'stack_overflow';
    const msg = String(e.message);
    if (/unreachable/.test(msg)) return 'unreachable';
    if (/^table index out of bounds/.test(msg)) return 'table_out_of_bounds';
    if (/^index out of bounds/.test(msg)) return 'memory_out_of_bounds';
    if (/indirect call to null/.test(msg)) return 'indirect_call_null';
    if (/indirect call signature mismatch/.test(msg)) return 'indirect_call_type';
    if (/dereferencing null pointer/.test(msg)) return 'null_reference';
    if (/memory access out of bounds|data segment.*out of bounds|out of bounds memory/.test(msg)) return 'memory_out_of_bounds';
    if (/table index is out of bounds|table.*out of bounds|element segment/.test(msg)) return 'table_out_of_bounds';
    if (/null function or function signature mismatch/.test(msg)) return 'indirect_call_type';
    if (/signature mismatch/.test(msg)) return 'indirect_call_type';
    if (/divide by zero|remainder by zero/.test(msg)) return 'integer_divide_by_zero';
    if (/divide result unrepresentable|integer overflow/.test(msg)) return 'integer_overflow';
    if (/float unrepresentable|invalid conversion/.test(msg)) return 'invalid_conversion';
    if (/null/.test(msg)) return 'null_reference';
    return 'other';
  }

  // Whether the host's memory cap refused a growth in this call (LIM-2).
  // Only the memory cap counts: the flag is set by the rewrite's helper
  // (rewrite.js), which sees growths past the cap, whatever the plugin's own
  // maximum, and never a growth past that maximum alone or a `table.grow`
  // (LIM-8).
  const growthRefused = () => refused !== null && refused.value === 1;

  function classify(e) {
    if (e instanceof Abort) return { ...e };
    if (e instanceof Exit) {
      // LIM-2, WASI-10: proc_exit after a refused growth is how a language
      // runtime (Go's) ends when it cannot get memory.
      if (growthRefused()) return { kind: KINDS.MEMORY_LIMIT, detail: `[LIM-2] the plugin called proc_exit(${e.code}) after a memory.grow past the cap of ${capPages * 65536} bytes was refused` };
      return { kind: e.kind, trap: e.trap, detail: e.detail };
    }
    const isTrap = e instanceof WebAssembly.RuntimeError || isStackOverflow(e);
    if (!isTrap) {
      return { kind: KINDS.HOST_FAILURE, detail: `host error: ${e && e.stack ? e.stack : e}` };
    }
    const trap = trapKind(e);
    if (growthRefused()) {
      // LIM-2: a trap after a refused growth in this call.
      return { kind: KINDS.MEMORY_LIMIT, trap, detail: `[LIM-2] the plugin trapped (${trap}) after a memory.grow past the cap of ${capPages * 65536} bytes was refused` };
    }
    return { kind: KINDS.TRAP, trap, detail: `${trap}: ${e.message}` };
  }

  function handle(req) {
    if (req.op === 'instantiate') {
      instance = null;
      // The flag of the instance before, if any, says nothing of this one.
      refused = null;
      hostCalls = new Map(Object.entries(req.hostCalls ?? {}));
      capPages = req.capPages;
      call.maxOutput = req.maxOutput;
      call.maxLog = req.maxLog;
      call.maxRequest = req.maxRequest;
      const imports = { pabi };
      if (req.wasi) {
        imports.wasi_snapshot_preview1 = makeWasi({
          memory: () => memory,
          capabilities: req.capabilities,
          env: req.env,
          write: stdio,
          entropy,
          monotonicNs,
        }).imports;
      }
      try {
        instance = new WebAssembly.Instance(req.module, imports);
      } catch (e) {
        return { error: classify(e) };
      }
      memory = instance.exports.memory;
      refused = req.refusedExport === null ? null : instance.exports[req.refusedExport];
      return { ok: true };
    }
    if (req.op === 'invoke') {
      call.phase = req.phase;
      call.input = req.input;
      call.output.reset();
      call.message.reset();
      call.logs.reset();
      call.pending[1].reset();
      call.pending[2].reset();
      call.records = 0;
      call.logBytes = 0;
      call.droppedRecords = 0;
      call.droppedBytes = 0;
      call.unstored = 0;
      // CALL-6: empty before the first host call of the call.
      call.reply = EMPTY;
      if (refused) refused.value = 0;
      const fn = instance.exports[req.export];
      let value;
      let error;
      // The deadline starts now (LIM-3).
      started();
      try {
        value = req.args.length ? fn(...req.args) : fn();
      } catch (e) {
        error = classify(e);
      }
      call.input = null; // the input may be large; do not keep it past the call
      call.reply = EMPTY; // CALL-6: after the call ends the reply is empty
      flushStdio();
      // Most calls log nothing, and then there is nothing to send or to deliver.
      const log = call.logs.len || call.droppedRecords || call.droppedBytes || call.unstored ? {
        records: call.logs.take(), droppedRecords: call.droppedRecords, droppedBytes: call.droppedBytes,
        unstored: call.unstored, cap: call.maxLog,
      } : null;
      if (error) {
        instance = null;
        return { error, log };
      }
      const output = call.output.take();
      const message = call.message.take();
      return { value: value === undefined ? null : value | 0, output, message, log };
    }
    return { error: { kind: KINDS.HOST_FAILURE, detail: `unknown request ${req.op}` } };
  }

  // The byte buffers of an answer are handed over, not copied.
  function transfers(res) {
    const list = [];
    for (const v of [res.output, res.message, res.log?.records]) if (v && v.byteLength) list.push(v.buffer);
    return list;
  }

  return { handle, transfers };
}
