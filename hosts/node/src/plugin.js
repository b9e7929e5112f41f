// The main-thread side of the host: loads, calls, deadlines, trap recovery.
//
// Every call into plugin code runs in a worker thread (worker.js). The main
// thread posts the request, waits with Atomics.wait until the worker says
// the export has started, then waits at most the deadline for it to finish.
// Past the deadline it terminates the worker, which ends the call wherever
// it is (LIM-3); the instance died with the worker, and the next call gets
// a fresh worker and a fresh instance (LIFE-5, LIFE-6). Waiting with
// Atomics.wait and taking the answer with receiveMessageOnPort keeps the
// API synchronous.

import { Worker, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { checkPlugin } from './check.js';
import { instrumentMemory } from './binary.js';
import { PabiError, DEAD_KINDS, STATUS_NAMES } from './errors.js';

// V8 compiles wasm functions lazily, on their first call, which would count
// a large function's compile time against that call's deadline (LIM-3). The
// reference host compiles at load; so does this one: every function is
// compiled when the module is, before any deadline is armed.
setFlagsFromString('--no-wasm-lazy-compilation');

const STARTED = 1;
const DONE = 2;
const PAGE = 65536;

export const DEFAULT_LIMITS = Object.freeze({
  timeoutMs: 1000, // LIM-3
  maxMemory: 128 * 1024 * 1024, // LIM-1
  maxOutput: 16 * 1024 * 1024, // LIM-5
  fuel: null, // LIM-4: not supported by this host
  stackSizeMB: 4, // LIM-7: V8's stack for the worker, at least 512 KiB
});

// How long a fresh worker may take to start before the host gives up.
const STARTUP_MS = 60000;

const WORKER_URL = new URL('./worker.js', import.meta.url);

function defaultLog(pluginName) {
  const names = ['error', 'warn', 'info', 'debug', 'trace'];
  return (level, text) => {
    process.stderr.write(`[${pluginName}] ${names[level]}: ${JSON.stringify(text).slice(1, -1)}\n`);
  };
}

/**
 * Loads a plugin: the static checks (HOST-1), then a first instance with
 * `_initialize` and `pabi_init` (LIFE-1, LIFE-2). Throws PabiError when the
 * load fails.
 *
 * options.config   configuration bytes for pabi_init (default empty)
 * options.limits   { timeoutMs, maxMemory, maxOutput, fuel, stackSizeMB }
 * options.allow    capabilities the host allows (WASI-5); `fs:` ones are never granted
 * options.env      values for `env:NAME` capabilities
 * options.onLog    (level, text) => void; default: standard error
 * options.crashLoop { max, windowMs } (LIFE-7), default { max: 5, windowMs: 60000 }
 */
export function loadPlugin(bytes, options = {}) {
  const plugin = new Plugin(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), options);
  plugin.load();
  return plugin;
}

export class Plugin {
  constructor(bytes, options) {
    this.config = toBytes(options.config ?? new Uint8Array(0));
    this.limits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
    for (const [k, v] of Object.entries(this.limits)) if (v === undefined) this.limits[k] = DEFAULT_LIMITS[k];
    if (this.limits.fuel !== null) {
      // LIM-4: a host that cannot meter fuel refuses a configuration that asks for it.
      throw new PabiError('NOT_SUPPORTED', { clause: 'LIM-4', detail: '[LIM-4] V8 offers no fuel metering; this host refuses a fuel budget rather than ignore it' });
    }
    const allow = (options.allow ?? []).filter((c) => !c.startsWith('fs:'));
    const checked = checkPlugin(bytes, { allow });
    this.metadata = checked.metadata;
    this.functions = [...checked.functions.keys()];
    this.exportsByName = checked.functions;
    this.lifecycle = checked.lifecycle;
    this.capabilities = checked.granted;
    this.env = options.env ?? {};
    this.onLog = options.onLog ?? defaultLog(this.metadata.name);
    this.crashLoop = { max: 5, windowMs: 60000, ...(options.crashLoop ?? {}) };
    this.failures = [];

    const memory = checked.module.memories[0];
    this.capPages = Math.min(65536, Math.floor(this.limits.maxMemory / PAGE));
    if (memory.min > this.capPages) {
      throw new PabiError('MEMORY_LIMIT', { detail: `[LIM-1] the initial memory of ${memory.min * PAGE} bytes is larger than the cap of ${this.limits.maxMemory} bytes` });
    }
    if (checked.module.tables.some((t) => t.min > 10000)) {
      throw new PabiError('MEMORY_LIMIT', { detail: '[LIM-8] an initial table is larger than the cap of 10,000 elements' });
    }
    // LIM-1, LIM-2: see binary.js, instrumentMemory.
    this.module = new WebAssembly.Module(instrumentMemory(bytes, checked.module, this.capPages));
    this.worker = null;
    this.live = false;
  }

  // --- the worker -------------------------------------------------------

  startWorker() {
    const control = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    this.ctl = new Int32Array(control);
    this.port = port1;
    this.worker = new Worker(WORKER_URL, {
      workerData: { control, port: port2 },
      transferList: [port2],
      resourceLimits: { stackSizeMB: this.limits.stackSizeMB },
      stdout: false,
      stderr: false,
    });
    this.worker.unref();
    this.port.unref();
  }

  stopWorker() {
    if (this.worker) {
      this.worker.terminate();
      this.port.close();
    }
    this.worker = null;
    this.live = false;
  }

  // Sends one request and waits for its answer. For `invoke`, the deadline
  // runs from the moment the worker starts the export (LIM-3).
  request(req) {
    if (!this.worker) this.startWorker();
    Atomics.store(this.ctl, 0, 0);
    this.port.postMessage(req);
    const startBy = Date.now() + STARTUP_MS;
    while (Atomics.load(this.ctl, 0) === 0) {
      const left = startBy - Date.now();
      if (left <= 0) {
        this.stopWorker();
        throw new Error('the worker thread did not start');
      }
      Atomics.wait(this.ctl, 0, 0, left);
    }
    if (req.op === 'invoke') {
      const deadline = Date.now() + this.limits.timeoutMs;
      while (Atomics.load(this.ctl, 0) === STARTED) {
        const left = deadline - Date.now();
        if (left <= 0) {
          this.stopWorker();
          return { error: { kind: 'TIMEOUT', detail: `[LIM-3] the call of ${req.export} ran past its deadline of ${this.limits.timeoutMs} ms` } };
        }
        Atomics.wait(this.ctl, 0, STARTED, left);
      }
    }
    let got;
    while (!(got = receiveMessageOnPort(this.port))) Atomics.wait(this.ctl, 0, DONE, 10);
    const res = got.message;
    if (res.logs) {
      for (const r of res.logs) this.onLog(r.level, r.text);
      if (res.dropped) this.onLog(1, `${res.dropped} log records of this call were dropped`);
    }
    return res;
  }

  // Runs one export in `phase` with `input`; returns { value, output, message } or throws.
  invoke(exportName, phase, input, args) {
    const res = this.request({ op: 'invoke', export: exportName, phase, input, args, maxOutput: this.limits.maxOutput, capPages: this.capPages });
    if (res.error) this.fail(res.error);
    return res;
  }

  fail(error) {
    if (error.kind === 'INTERNAL') {
      this.stopWorker();
      throw new Error(error.detail);
    }
    if (DEAD_KINDS.has(error.kind)) {
      this.live = false; // LIFE-5: never used again; the worker dropped it.
      this.countFailure();
    }
    throw new PabiError(error.kind, error);
  }

  countFailure() {
    const now = Date.now();
    this.failures = this.failures.filter((t) => now - t < this.crashLoop.windowMs);
    this.failures.push(now);
  }

  // --- load (host-guide section 8) -------------------------------------

  load() {
    this.live = false;
    const now = Date.now();
    const recent = this.failures.filter((t) => now - t < this.crashLoop.windowMs);
    if (recent.length >= this.crashLoop.max) {
      throw new PabiError('CRASH_LOOP', { detail: `[LIFE-7] ${recent.length} failures within ${this.crashLoop.windowMs} ms` });
    }
    const res = this.request({
      op: 'instantiate', module: this.module, wasi: this.metadata.profile === 'wasi',
      capabilities: this.capabilities, env: this.env, capPages: this.capPages,
    });
    if (res.error) this.fail(res.error);
    try {
      if (this.lifecycle.has('_initialize')) this.invoke('_initialize', '_initialize', new Uint8Array(0), []);
      if (this.lifecycle.has('pabi_init')) {
        const r = this.invoke('pabi_init', 'pabi_init', this.config, [this.config.length]);
        this.status(r); // a failed pabi_init fails the load (LIFE-2, ERR-7)
      }
    } catch (e) {
      if (e instanceof PabiError && !DEAD_KINDS.has(e.kind)) this.countFailure();
      this.live = false;
      throw e;
    }
    this.live = true;
  }

  // Maps a returned value to the result (host-guide section 9, step 6).
  status(r) {
    const s = r.value;
    if (s === 0) return r.output;
    if ((s >= 1 && s <= 4) || (s >= 64 && s <= 127)) {
      const described = s >= 64 ? this.metadata.statuses?.[String(s)] : STATUS_NAMES[s];
      throw new PabiError('PLUGIN_ERROR', { status: s, pluginMessage: r.message, detail: `status ${s}${described ? ` (${described})` : ''}` });
    }
    const why = s >= 5 && s <= 63 ? '[ERR-2] a reserved status' : '[ERR-4] not a status';
    throw new PabiError('UNKNOWN_STATUS', { status: s, detail: `${s}, ${why}` });
  }

  ensureLive() {
    if (!this.live) this.load();
  }

  // --- calls (host-guide section 9) --------------------------------------

  /** Calls plugin function `name` with `input`; returns the output bytes or throws PabiError. */
  call(name, input = new Uint8Array(0)) {
    const exportName = this.exportsByName.get(name);
    if (!exportName) throw new PabiError('UNKNOWN_FUNCTION', { detail: `"${name}"` });
    this.ensureLive();
    const r = this.invoke(exportName, 'call', toBytes(input), [toBytes(input).length]);
    this.failures = [];
    return this.status(r);
  }

  /** Calls pabi_state_save on the live instance and returns the state. */
  saveState() {
    if (!this.lifecycle.has('pabi_state_save')) throw new PabiError('UNKNOWN_FUNCTION', { detail: '"pabi_state_save": the plugin does not export the state pair' });
    this.ensureLive();
    return this.status(this.invoke('pabi_state_save', 'pabi_state_save', new Uint8Array(0), []));
  }

  /** Calls pabi_state_load on the live instance with `state`. */
  loadState(state) {
    if (!this.lifecycle.has('pabi_state_load')) throw new PabiError('UNKNOWN_FUNCTION', { detail: '"pabi_state_load": the plugin does not export the state pair' });
    this.ensureLive();
    const bytes = toBytes(state);
    this.status(this.invoke('pabi_state_load', 'pabi_state_load', bytes, [bytes.length]));
  }

  /** Discards the plugin: pabi_shutdown on a live instance (LIFE-4), then the worker. */
  close() {
    if (this.live && this.lifecycle.has('pabi_shutdown')) {
      try {
        const r = this.invoke('pabi_shutdown', 'pabi_shutdown', new Uint8Array(0), []);
        if (r.value !== 0) this.onLog(1, `pabi_shutdown returned status ${r.value}`);
      } catch (e) {
        this.onLog(1, `pabi_shutdown failed: ${e.message}`);
      }
    }
    this.stopWorker();
  }
}

function toBytes(v) {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(v);
}
