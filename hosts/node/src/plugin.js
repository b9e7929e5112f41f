// @ts-check
// The lifecycle of a plugin, on the main thread: the load, calls, state,
// trap recovery, the crash loop and the close (host-guide sections 8 and 9).
//
// Every call into plugin code runs in a worker thread (worker.js), reached
// through the call channel (channel.js) of a worker that the supervisor
// starts (supervisor.js). The main thread posts the request and waits with
// Atomics.wait until the worker says it is done, at most until the
// deadline, which runs from the moment the worker starts the export. Past
// the deadline it terminates the worker, which ends the call wherever it
// is (LIM-3); the instance died with the worker, and the next call gets a
// fresh worker and a fresh instance (LIFE-5, LIFE-6). Waiting with
// Atomics.wait and taking the answer with receiveMessageOnPort keeps the
// API synchronous.

import { setFlagsFromString } from 'node:v8';
import { checkPlugin } from './check.js';
import { handlerFor, runHandler, toHostFunctions } from './host.js';
import { rewriteModule } from './rewrite.js';
import { BinaryError } from './reader.js';
import { PabiError, KINDS, DEAD_KINDS, STATUS_NAMES } from './errors.js';
import { describe } from './channel.js';
import { startWorker } from './supervisor.js';
import { Canceller, Operations } from './cancel.js';
import { readOptions, mergeOptions, defaultLog, Oversized, toBytes, lengthOf } from './options.js';

// V8 compiles wasm functions lazily, on their first call, which would count
// a large function's compile time against that call's deadline (LIM-3). The
// reference host compiles at load; so does this one: every function is
// compiled when the module is, before any deadline is armed. V8 decides
// between lazy and eager when it compiles a module, so the worker that
// instantiates it later compiles nothing. V8's flags belong to the whole
// process (a Worker refuses V8 options in its execArgv), so the flag is
// changed only around the host's own synchronous compile and set back at
// once: the application's own modules compile as the process was told to.
const LAZY = processLazyCompilation();

/**
 * Whether the process compiles wasm lazily: what its command line or
 * NODE_OPTIONS says, the last word winning, else V8's default (lazy since
 * V8 11, so in every Node this host supports).
 */
function processLazyCompilation() {
  const words = [...(process.env.NODE_OPTIONS ?? '').split(/\s+/), ...process.execArgv];
  let lazy = true;
  for (const word of words) {
    const flag = word.replace(/_/g, '-');
    if (flag === '--wasm-lazy-compilation') lazy = true;
    else if (flag === '--no-wasm-lazy-compilation') lazy = false;
  }
  return lazy;
}

/**
 * Compiles every function of the module now (see LAZY).
 * @param {BufferSource} bytes
 */
function compileEagerly(bytes) {
  if (!LAZY) return new WebAssembly.Module(bytes);
  setFlagsFromString('--no-wasm-lazy-compilation');
  try {
    return new WebAssembly.Module(bytes);
  } finally {
    setFlagsFromString('--wasm-lazy-compilation');
  }
}

const PAGE = 65536;
const DECODER = new TextDecoder();
const NO_BYTES = new Uint8Array(0);

/**
 * Loads a plugin: the static checks (HOST-1), then a first instance with
 * `_initialize` and `pabi_init` (LIFE-1, LIFE-2). Throws PabiError when the
 * load fails.
 * @param {import('./options.js').BytesLike} bytes the module
 * @param {import('./options.js').LoadOptions} [options]
 * @returns {Plugin}
 */
export function loadPlugin(bytes, options = {}) {
  const plugin = new Plugin(bytes instanceof Uint8Array ? bytes : toBytes(bytes), options);
  plugin.load();
  return plugin;
}

/**
 * Settings shared by every plugin it loads, and the host functions it
 * offers:
 *
 *   const host = new Host({ limits: { timeoutMs: 500 } });
 *   host.define('kv.get', (request, cx) => lookup(request), { onlyFor: ['enrich'] });
 *   const plugin = host.load(bytes, { config });
 *
 * `options` are those of loadPlugin; those given to load() are added to
 * them, `limits` field by field, `hostFunctions` after the host's. A
 * plugin sees the functions defined before it was loaded: whether it may
 * run depends on them (CALL-5), so they are fixed at load, for its later
 * instances too.
 */
export class Host {
  /** @type {import('./options.js').LoadOptions} */
  #options;
  /** @type {import('./host.js').HostFunction[]} */
  #functions;

  /** @param {import('./options.js').LoadOptions} [options] */
  constructor(options = {}) {
    this.#options = { ...options };
    this.#functions = toHostFunctions(options.hostFunctions);
  }

  /**
   * Offers `handler(request, context)` under the host-call `name` (see
   * HostFunction in host.js); options.onlyFor names the plugins it is
   * offered to. A later definition of a name replaces an earlier one.
   * @param {string} name
   * @param {import('./host.js').Handler} handler
   * @param {{ onlyFor?: string[] }} [options]
   * @returns {this}
   */
  define(name, handler, options = {}) {
    this.#functions = [...this.#functions, ...toHostFunctions([{ name, handler, onlyFor: options.onlyFor }])];
    return this;
  }

  /**
   * Loads a plugin with the host's settings and host functions, `options` added.
   * @param {import('./options.js').BytesLike} bytes
   * @param {import('./options.js').LoadOptions} [options]
   * @returns {Plugin}
   */
  load(bytes, options = {}) {
    return loadPlugin(bytes, mergeOptions({ ...this.#options, hostFunctions: this.#functions }, options));
  }
}

// The current channel of a plugin, for the host's own tests and watchdog
// (channelOf); set in the class's static block, which alone sees #channel.
/** @type {(plugin: Plugin) => import('./channel.js').MainEnd | null} */
let channelOfPlugin;

/**
 * A loaded plugin. One object runs one call at a time (HOST-9); use several
 * for concurrent calls.
 */
export class Plugin {
  /** @type {import('./options.js').Limits} */
  #limits;
  // CALL-5: each declared host call with its handler, or null for an
  // optional one the application does not offer to this plugin.
  /** @type {Map<string, import('./host.js').Handler | null>} */
  #handlers;
  /** @type {Map<string, string>} function name → export name */
  #exports;
  /** @type {Set<string>} the lifecycle exports the plugin has */
  #lifecycle;
  #capabilities;
  #env;
  /** @type {(level: number, text: string) => void} */
  #onLog;
  /** @type {(text: string) => void} */
  #onHostLog;
  #crashLoop;
  /** @type {number[]} the times of recent failures (LIFE-7) */
  #failures = [];
  #capPages;
  /** @type {Uint8Array | Oversized} */
  #config;
  /** @type {WebAssembly.Module} */
  #module;
  /** @type {string | null} the name of the export the rewrite added, if any */
  #refusedExport;
  /** @type {import('./channel.js').MainEnd | null} the channel to the worker that holds the instance */
  #channel = null;
  /** @type {import('./channel.js').MainEnd[]} stopped channels whose worker may not have gone yet */
  #stopping = [];
  #live = false;
  // CALL-8: set while a call of this plugin's instance runs, so that a
  // handler cannot call into it.
  /** @type {import('./channel.js').Request | null} */
  #busy = null;
  #canceller = new Canceller();
  #operations = new Operations(this.#canceller);
  // Whether another thread may hold the canceller: only then do the waits
  // of a call look at it every few milliseconds.
  #crossThread = false;
  // How deep the public operations nest (a call that reloads the instance
  // runs a load): only the outermost numbers the operation.
  #depth = 0;

  static {
    channelOfPlugin = (plugin) => plugin.#channel;
  }

  /**
   * Runs the static checks and compiles the module; load() makes the
   * first instance. Throws PabiError when the plugin cannot be loaded.
   * @param {import('./options.js').BytesLike} bytes the module
   * @param {import('./options.js').LoadOptions} [options]
   */
  constructor(bytes, options = {}) {
    const input = bytes instanceof Uint8Array ? bytes : toBytes(bytes);
    const settings = readOptions(options);
    this.#limits = settings.limits;
    const functions = settings.hostFunctions;
    const checked = checkPlugin(input, {
      allow: settings.allow, budget: this.#limits, abi: settings.abi, offers: (name, plugin) => handlerFor(functions, name, plugin) !== null,
    });
    /** The plugin's metadata (META-1), as declared. */
    this.metadata = checked.metadata;
    /** @type {string[]} the names of the plugin's functions, for call() */
    this.functions = [...checked.functions.keys()];
    this.#exports = checked.functions;
    this.#lifecycle = checked.lifecycle;
    this.#capabilities = checked.granted;
    this.#handlers = new Map([...checked.hostCalls.keys()].map((name) => [name, handlerFor(functions, name, this.metadata.name)]));
    this.#env = settings.env;
    this.#onLog = options.onLog ?? defaultLog(this.metadata.name);
    this.#onHostLog = settings.onHostLog;
    this.#crashLoop = settings.crashLoop;

    const memory = checked.module.memories[0];
    this.#capPages = Math.min(65536, Math.floor(this.#limits.maxMemory / PAGE));
    if (memory.min > this.#capPages) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-1] the initial memory of ${memory.min * PAGE} bytes is larger than the cap of ${this.#limits.maxMemory} bytes` });
    }
    const tableCap = this.#limits.maxTableElements;
    const big = checked.module.tables.find((t) => t.min > tableCap);
    if (big) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-8] an initial table of ${big.min} elements is larger than the cap of ${tableCap} elements per table` });
    }
    const total = checked.module.tables.reduce((n, t) => n + (t.max === null ? tableCap : Math.min(t.max, tableCap)), 0);
    if (total > this.#limits.maxTotalTableElements) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-8] the plugin's ${checked.module.tables.length} tables may grow to ${total} elements together, more than this host's cap of ${this.#limits.maxTotalTableElements}` });
    }
    // LIM-13: the configuration is refused by its length before any code runs.
    this.#config = options.config instanceof Oversized ? options.config : toBytes(options.config ?? NO_BYTES);
    this.#checkLength(this.#config.length, 'the configuration');
    // LIM-1, LIM-2, LIM-8: see rewrite.js.
    let rewritten;
    try {
      rewritten = rewriteModule(input, checked.module, { capPages: this.#capPages, tableCap });
    } catch (e) {
      if (e instanceof BinaryError && e.clause === 'LIM-12') throw new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] ${e.message}` });
      throw e;
    }
    this.#refusedExport = rewritten.refusedExport;
    try {
      this.#module = compileEagerly(rewritten.bytes);
    } catch (e) {
      // The module validated before the rewrite; V8 refusing it now means
      // the rewrite took it past one of V8's own size limits.
      if (e instanceof WebAssembly.CompileError) throw new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] this host's rewrite of the module passes a limit of its engine: ${e.message}` });
      // Anything else (V8 out of memory while compiling) is the engine's
      // failure, not the plugin's (ERR-6).
      throw new PabiError(KINDS.HOST_FAILURE, { detail: `the engine could not compile the module: ${e && e.message}` });
    }
  }

  // LIM-13: bytes the plugin would read through input_read, refused by
  // length (the kind leaves the instance as it was).
  /**
   * @param {number} length
   * @param {string} what
   */
  #checkLength(length, what) {
    if (length > this.#limits.maxInput) {
      throw new PabiError(KINDS.INPUT_LIMIT, { detail: `[LIM-13] ${what} is ${length} bytes, longer than ${this.#limits.maxInput}` });
    }
  }

  // --- the worker and its channel ---------------------------------------

  #stopWorker() {
    const channel = this.#channel;
    if (channel) {
      channel.stop();
      this.#stopping = [...this.#stopping.filter((c) => !c.exited), channel];
    }
    this.#channel = null;
    this.#live = false;
  }

  // Sends one request to the instance's worker, starting one if there is
  // none, and waits for the answer. While it waits, the instance is busy:
  // a host-call handler that calls back into this plugin is refused
  // (CALL-8).
  /**
   * @param {import('./channel.js').Request} req
   * @returns {import('./channel.js').Answer}
   */
  #request(req) {
    let res;
    this.#busy = req;
    try {
      this.#channel ??= startWorker(this.#limits);
      const channel = this.#channel;
      res = channel.request(req, {
        timeoutMs: this.#limits.timeoutMs,
        serveHostCall: (call) => this.#serveHostCall(req, call),
        cancelled: () => this.#operations.cancelled(),
        crossThread: this.#crossThread,
      });
      // The channel stopped its worker (a deadline, a cancel, a lost worker):
      // the next call starts another.
      if (channel.exit) this.#stopWorker();
    } finally {
      this.#busy = null;
    }
    // The records go out once the call has ended, so that onLog may call
    // the plugin again as before host calls existed.
    if (res.log) this.#deliverLog(res.log, req.export);
    return res;
  }

  // Runs the application's handler of one host call of the plugin (the
  // worker asks only for a declared, offered name: CALL-3, CALL-5).
  /**
   * @param {import('./channel.js').Request} req
   * @param {{ name: string, request: Uint8Array }} call
   */
  #serveHostCall(req, { name, request }) {
    const context = Object.freeze({
      plugin: this.metadata.name,
      function: req.export.startsWith('pabi_fn_') ? req.export.slice(8) : req.export,
      hostCall: name,
    });
    return runHandler(this.#handlers.get(name), request, context, this.#limits.maxReply);
  }

  // CALL-8, HOST-10: a handler that calls into this plugin while its
  // instance waits for that handler is refused before any plugin code
  // runs. The error is HOST_FAILURE (the application's mistake, not the
  // plugin's), the instance and the crash-loop count are left as they
  // were, and the handler sees the error like any other: thrown, it
  // becomes the E_FAILED message the plugin reads.
  /** @param {string} what */
  #refuseReentry(what) {
    if (this.#busy) {
      throw new PabiError(KINDS.HOST_FAILURE, {
        clause: 'CALL-8',
        detail: `[CALL-8] ${what} was called on plugin "${this.metadata.name}" while its instance runs ${this.#busy.export ?? 'instantiation'} and waits for a host call's handler; a handler must not call into the instance whose host call it serves`,
      });
    }
  }

  // Runs one public operation, numbered so that a Canceller can cancel it
  // (cancel.js); an operation inside another is part of it.
  /**
   * @template T
   * @param {() => T} run
   * @returns {T}
   */
  #operation(run) {
    if (this.#depth++ === 0) this.#operations.begin();
    try {
      return run();
    } finally {
      if (--this.#depth === 0) this.#operations.end();
    }
  }

  // Hands the call's log records to onLog, then says once what the cap
  // dropped (LIM-11).
  /**
   * @param {{ records: Uint8Array, droppedRecords: number, droppedBytes: number, unstored: number, cap: number }} log
   * @param {string} exportName
   */
  #deliverLog(log, exportName) {
    const { records } = log;
    const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
    for (let at = 0; at < records.length;) {
      const level = records[at];
      const len = view.getUint32(at + 1, true);
      this.#onLog(level, DECODER.decode(records.subarray(at + 5, at + 5 + len)));
      at += 5 + len;
    }
    if (log.droppedRecords || log.droppedBytes) {
      this.#onHostLog(`[LIM-11] the call of ${exportName} passed the log cap of ${log.cap} bytes: ${log.droppedRecords} log records and ${log.droppedBytes} bytes of log text were dropped`);
    }
    if (log.unstored) this.#onHostLog(`the call of ${exportName} made ${log.unstored} more log records than this host shows; they were not shown`);
  }

  // Runs one export in `phase` with `input`; returns { value, output, message } or throws.
  /**
   * @param {string} exportName
   * @param {string} phase
   * @param {Uint8Array} input
   * @param {number[]} args
   * @returns {{ value: number, output: Uint8Array, message: Uint8Array }}
   */
  #invoke(exportName, phase, input, args) {
    const res = this.#request({ op: 'invoke', export: exportName, phase, input, args });
    if (res.error) this.#fail(res.error);
    return /** @type {any} */ (res);
  }

  /**
   * @param {import('./channel.js').Failure} error
   * @returns {never}
   */
  #fail(error) {
    if (error.kind === KINDS.HOST_FAILURE) {
      // The host's own code failed (ERR-6), in the worker or in the
      // channel, not the plugin. The worker is not trusted after that, so
      // it is stopped and the next call starts on a fresh instance; LIFE-7
      // does not count it, as the plugin did nothing wrong.
      this.#stopWorker();
      throw new PabiError(KINDS.HOST_FAILURE, { detail: error.detail });
    }
    if (DEAD_KINDS.has(error.kind)) {
      this.#live = false; // LIFE-5: never used again; the worker dropped it.
      this.#countFailure();
    }
    throw new PabiError(error.kind, error);
  }

  #countFailure() {
    const now = Date.now();
    this.#failures = this.#failures.filter((t) => now - t < this.#crashLoop.windowMs);
    this.#failures.push(now);
  }

  // --- load (host-guide section 8) -------------------------------------

  /**
   * Makes a fresh instance: `_initialize`, then `pabi_init` with the
   * configuration (LIFE-1, LIFE-2). loadPlugin does it once; a call after
   * the instance died does it again (LIFE-6). Throws CRASH_LOOP after too
   * many failures in a row (LIFE-7).
   */
  load() {
    this.#refuseReentry('load()');
    this.#operation(() => this.#load());
  }

  #load() {
    this.#live = false;
    const now = Date.now();
    const recent = this.#failures.filter((t) => now - t < this.#crashLoop.windowMs);
    if (recent.length >= this.#crashLoop.max) {
      throw new PabiError(KINDS.CRASH_LOOP, { detail: `[LIFE-7] ${recent.length} failures within ${this.#crashLoop.windowMs} ms` });
    }
    const res = this.#request({
      op: 'instantiate', module: this.#module, wasi: this.metadata.profile === 'wasi',
      capabilities: this.#capabilities, env: this.#env, capPages: this.#capPages, refusedExport: this.#refusedExport,
      // The caps of every call of the instance, sent once rather than with each call.
      maxOutput: this.#limits.maxOutput, maxLog: this.#limits.maxLog, maxRequest: this.#limits.maxRequest,
      // CALL-3, CALL-5: the declared names, and whether each is offered.
      hostCalls: Object.fromEntries([...this.#handlers].map(([name, h]) => [name, h !== null])),
    });
    if (res.error) this.#fail(res.error);
    try {
      if (this.#lifecycle.has('_initialize')) this.#invoke('_initialize', '_initialize', NO_BYTES, []);
      if (this.#lifecycle.has('pabi_init')) {
        const config = toBytes(this.#config);
        const r = this.#invoke('pabi_init', 'pabi_init', config, [config.length]);
        this.#status(r); // a failed pabi_init fails the load (LIFE-2, ERR-7)
      }
    } catch (e) {
      // A failed init counts for LIFE-7 (dead kinds were counted by #fail());
      // a failure of the host itself, or a cancel, does not.
      if (e instanceof PabiError && !DEAD_KINDS.has(e.kind) && e.kind !== KINDS.HOST_FAILURE && e.kind !== KINDS.CANCELLED) this.#countFailure();
      this.#live = false;
      throw e;
    }
    this.#live = true;
  }

  // Maps a returned value to the result (host-guide section 9, step 6).
  /**
   * @param {{ value: number, output: Uint8Array, message: Uint8Array }} r
   * @returns {Uint8Array}
   */
  #status(r) {
    const s = r.value;
    if (s === 0) return r.output;
    if ((s >= 1 && s <= 4) || (s >= 64 && s <= 127)) {
      const described = s >= 64 ? this.metadata.statuses?.[String(s)] : STATUS_NAMES[s];
      throw new PabiError(KINDS.PLUGIN_ERROR, { status: s, pluginMessage: r.message, detail: `status ${s}${described ? ` (${described})` : ''}` });
    }
    const why = s >= 5 && s <= 63 ? '[ERR-2] a reserved status' : '[ERR-4] not a status';
    throw new PabiError(KINDS.UNKNOWN_STATUS, { status: s, detail: `${s}, ${why}` });
  }

  #ensureLive() {
    if (!this.#live) this.#load();
  }

  // A call that returned a status, whatever it was, ends a run of
  // consecutive failures (LIFE-7).
  /** @param {{ value: number, output: Uint8Array, message: Uint8Array }} r */
  #returned(r) {
    if (this.#failures.length) this.#failures = [];
    return this.#status(r);
  }

  // --- calls (host-guide section 9) --------------------------------------

  /**
   * Calls plugin function `name` with `input`; returns the output bytes or
   * throws PabiError. What it refuses before any plugin code runs:
   * UNKNOWN_FUNCTION, then INPUT_LIMIT (LIM-13).
   * @param {string} name
   * @param {import('./options.js').BytesLike | Oversized} [input]
   * @returns {Uint8Array}
   */
  call(name, input = NO_BYTES) {
    this.#refuseReentry(`call("${name}")`);
    const exportName = this.#exports.get(name);
    if (!exportName) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: `"${name}"` });
    this.#checkLength(lengthOf(input), 'the input');
    const bytes = toBytes(input);
    return this.#operation(() => {
      this.#ensureLive();
      return this.#returned(this.#invoke(exportName, 'call', bytes, [bytes.length]));
    });
  }

  /**
   * Calls pabi_state_save on the live instance and returns the state.
   * @returns {Uint8Array}
   */
  saveState() {
    this.#refuseReentry('saveState()');
    if (!this.#lifecycle.has('pabi_state_save')) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: '"pabi_state_save": the plugin does not export the state pair' });
    return this.#operation(() => {
      this.#ensureLive();
      return this.#returned(this.#invoke('pabi_state_save', 'pabi_state_save', NO_BYTES, []));
    });
  }

  /**
   * Calls pabi_state_load on the live instance with `state`.
   * @param {import('./options.js').BytesLike | Oversized} state
   */
  loadState(state) {
    this.#refuseReentry('loadState()');
    if (!this.#lifecycle.has('pabi_state_load')) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: '"pabi_state_load": the plugin does not export the state pair' });
    this.#checkLength(lengthOf(state), 'the state');
    const bytes = toBytes(state);
    this.#operation(() => {
      this.#ensureLive();
      const r = this.#invoke('pabi_state_load', 'pabi_state_load', bytes, [bytes.length]);
      // Anything but OK: the plugin may have adopted part of the state, so the
      // next call runs on a fresh instance without it (LIFE-11).
      if (r.value !== 0) this.#live = false;
      this.#returned(r);
    });
  }

  /**
   * What cancels this plugin's running call (cancel.js): its `cancel()`, or
   * that of `new Canceller(canceller.buffer)` in another thread, ends the
   * call with CANCELLED. Once it has been asked for, a running call looks
   * for a cancel every few milliseconds.
   * @returns {Canceller}
   */
  get canceller() {
    this.#crossThread = true;
    return this.#canceller;
  }

  /**
   * Cancels the running call, from a host-call handler of that call (the
   * only code that runs in this thread while it waits); the call ends with
   * CANCELLED when the handler returns. True when a call was running.
   */
  cancel() {
    return this.#canceller.cancel();
  }

  /** Discards the plugin: pabi_shutdown on a live instance (LIFE-4), then the worker. */
  close() {
    this.#refuseReentry('close()');
    if (this.#live && this.#lifecycle.has('pabi_shutdown')) {
      try {
        const r = this.#invoke('pabi_shutdown', 'pabi_shutdown', NO_BYTES, []);
        if (r.value !== 0) this.#onHostLog(`pabi_shutdown returned status ${r.value}`);
      } catch (e) {
        this.#onHostLog(`pabi_shutdown failed: ${e.message}`);
      }
    }
    this.#stopWorker();
  }

  /**
   * Resolves when every worker this plugin started has stopped.
   * @returns {Promise<void>}
   */
  async closed() {
    await Promise.all(this.#stopping.map((c) => c.exit));
  }

  /** The channels of the workers that were stopped and have not yet gone (channel.js, describe). */
  describeChannels() {
    const left = this.#stopping.filter((c) => !c.exited);
    return left.length ? left.map((c) => describe(c.ctl)).join('; ') : 'every stopped worker has gone';
  }
}

/**
 * The main thread's end of the channel to the plugin's current worker, or
 * null (channel.js): for the host's own tests and watchdog, not an API.
 * @param {Plugin} plugin
 */
export function channelOf(plugin) {
  return channelOfPlugin(plugin);
}
