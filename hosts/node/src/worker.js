// The instance side of the host. One worker thread holds at most one
// instance; the main thread (plugin.js) sends it one request at a time and
// terminates the worker when a call passes its deadline (LIM-3). This file
// links the four `pabi` functions (host-guide section 7) and, for the
// `wasi` profile, the baseline `wasi_snapshot_preview1` functions.

import { workerData } from 'node:worker_threads';
import { randomFillSync } from 'node:crypto';
import { makeWasi, Exit } from './wasi.js';
import { REFUSED_EXPORT } from './binary.js';

const ctl = new Int32Array(workerData.control);
const port = workerData.port;
export const STARTED = 1;
export const DONE = 2;

const MESSAGE_CAP = 65536;
const LOG_RECORD_CAP = 16384;
const LOG_RECORDS_PER_CALL = 1000;

class Abort {
  constructor(kind, fields) {
    this.kind = kind;
    Object.assign(this, fields);
  }
}

// Per-instance and per-call state.
let instance = null;
let memory = null;
let refused = null;
let wasi = null;
const call = { phase: null, input: new Uint8Array(0), output: [], outputLen: 0, message: [], messageLen: 0, logs: [], dropped: 0, maxOutput: 0 };

function check(name, ptr, len) {
  const size = memory.buffer.byteLength;
  if (ptr + len > size) {
    throw new Abort('ABI_VIOLATION', {
      clause: 'MEM-3',
      detail: `[MEM-3] pabi.${name}: range (pointer ${ptr}, length ${len}) ends at ${ptr + len}, past the memory size ${size}`,
    });
  }
}

function record(level, bytes) {
  if (call.logs.length >= LOG_RECORDS_PER_CALL) { call.dropped++; return; }
  const text = new TextDecoder().decode(bytes.subarray(0, LOG_RECORD_CAP));
  call.logs.push({ level, text });
}

const pabi = {
  input_read(dst, offset, len) {
    dst >>>= 0; offset >>>= 0; len >>>= 0;
    check('input_read', dst, len);
    const input = call.input;
    if (offset >= input.length) return 0;
    const n = Math.min(len, input.length - offset);
    new Uint8Array(memory.buffer, dst, n).set(input.subarray(offset, offset + n));
    return n;
  },
  output_write(src, len) {
    src >>>= 0; len >>>= 0;
    check('output_write', src, len);
    if (call.phase !== 'call' && call.phase !== 'pabi_state_save') return -3;
    if (call.outputLen + len > call.maxOutput) {
      throw new Abort('OUTPUT_LIMIT', { detail: `[LIM-5] the output would grow to ${call.outputLen + len} bytes, past the limit of ${call.maxOutput}` });
    }
    call.output.push(new Uint8Array(memory.buffer, src, len).slice());
    call.outputLen += len;
    return 0;
  },
  error_write(src, len) {
    src >>>= 0; len >>>= 0;
    check('error_write', src, len);
    if (call.phase === '_initialize') return -3;
    const room = MESSAGE_CAP - call.messageLen;
    const take = Math.min(room, len);
    if (take > 0) {
      call.message.push(new Uint8Array(memory.buffer, src, take).slice());
      call.messageLen += take;
    }
    return take < len ? -1 : 0;
  },
  log(level, src, len) {
    level >>>= 0; src >>>= 0; len >>>= 0;
    check('log', src, len);
    if (level > 4) return -2;
    record(level, new Uint8Array(memory.buffer, src, len));
    return 0;
  },
};

const concat = (parts, n) => {
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};

// ERR-9: V8's trap messages mapped to the trap kinds.
function trapKind(e) {
  if (e instanceof RangeError && /call stack/i.test(e.message)) return 'stack_overflow';
  const msg = String(e.message);
  if (/unreachable/.test(msg)) return 'unreachable';
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

function classify(e, capPages) {
  if (e instanceof Abort) return { ...e };
  if (e instanceof Exit) return { kind: e.kind, trap: e.trap, detail: e.detail };
  const isTrap = e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /call stack/i.test(e.message));
  if (!isTrap) {
    return { kind: 'INTERNAL', detail: `host error: ${e && e.stack ? e.stack : e}` };
  }
  const trap = trapKind(e);
  if (refused && refused.value === 1) {
    // LIM-2: a trap after a refused growth in this call.
    return { kind: 'MEMORY_LIMIT', trap, detail: `[LIM-2] the plugin trapped (${trap}) after a memory.grow past the cap of ${capPages * 65536} bytes was refused` };
  }
  return { kind: 'TRAP', trap, detail: `${trap}: ${e.message}` };
}

function handle(req) {
  if (req.op === 'instantiate') {
    instance = null;
    const imports = { pabi };
    if (req.wasi) {
      wasi = makeWasi({
        memory: () => memory,
        capabilities: req.capabilities,
        env: req.env,
        log: record,
        entropy: (buf) => randomFillSync(buf),
      });
      imports.wasi_snapshot_preview1 = wasi.imports;
    }
    try {
      instance = new WebAssembly.Instance(req.module, imports);
    } catch (e) {
      return { error: classify(e, req.capPages) };
    }
    memory = instance.exports.memory;
    refused = instance.exports[REFUSED_EXPORT] ?? null;
    return { ok: true };
  }
  if (req.op === 'invoke') {
    call.phase = req.phase;
    call.input = req.input;
    call.output = [];
    call.outputLen = 0;
    call.message = [];
    call.messageLen = 0;
    call.logs = [];
    call.dropped = 0;
    call.maxOutput = req.maxOutput;
    if (refused) refused.value = 0;
    const fn = instance.exports[req.export];
    let value;
    let error;
    // The deadline starts now (LIM-3).
    Atomics.store(ctl, 0, STARTED);
    Atomics.notify(ctl, 0);
    try {
      value = req.args.length ? fn(...req.args) : fn();
    } catch (e) {
      error = classify(e, req.capPages);
    }
    if (wasi) wasi.flush();
    const logs = call.logs;
    const dropped = call.dropped;
    if (error) {
      instance = null;
      return { error, logs, dropped };
    }
    return {
      value: value === undefined ? null : value | 0,
      output: concat(call.output, call.outputLen),
      message: concat(call.message, call.messageLen),
      logs,
      dropped,
    };
  }
  return { error: { kind: 'INTERNAL', detail: `unknown request ${req.op}` } };
}

port.on('message', (req) => {
  let res;
  try {
    res = handle(req);
  } catch (e) {
    res = { error: { kind: 'INTERNAL', detail: `host error: ${e && e.stack ? e.stack : e}` } };
  }
  port.postMessage(res);
  Atomics.store(ctl, 0, DONE);
  Atomics.notify(ctl, 0);
});

