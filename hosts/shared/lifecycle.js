// @ts-check
// The lifecycle of a plugin, shared by both platforms: the load, calls,
// state, trap recovery, the crash loop and the close (host-guide sections
// 8 and 9), written once for a synchronous platform (Node: the main thread
// blocks in Atomics.wait while the worker runs the instance) and an
// asynchronous one (a web page, whose main thread may not block).
//
// Every operation is a generator: where it needs the instance's worker, it
// yields a request ({ op: 'instantiate' | 'invoke', ... }) and gets the
// worker's answer back from the platform's driver, which runs the request
// on its call channel: Node's synchronously, a browser's by awaiting it.
// An error the driver meets while running a request (no worker could be
// started) is thrown into the generator at the yield. Nothing here touches
// a thread, a clock other than Date.now() or a platform API.

import { checkPlugin } from './check.js';
import { handlerFor, runHandler, toHostFunctions } from './host.js';
import { rewriteModule } from './rewrite.js';
import { BinaryError } from './reader.js';
import { PabiError, KINDS, DEAD_KINDS, STATUS_NAMES } from './errors.js';
import { Canceller, Operations } from './cancel.js';
import { readOptions, mergeOptions, defaultLog, Oversized, toBytes, lengthOf } from './options.js';

const PAGE = 65536;
const DECODER = new TextDecoder();
const NO_BYTES = new Uint8Array(0);

/**
 * A request to the worker: `instantiate` makes the instance, `invoke` runs
 * one export (instance.js, handle).
 * @typedef {{ op: string, export?: string, [field: string]: unknown }} Request
 */

/**
 * What a request ended with when the worker did not answer it: the kind,
 * and the host's explanation.
 * @typedef {{ kind: import('./errors.js').Kind, detail: string, clause?: string, trap?: string }} Failure
 */

/**
 * The answer of the worker, or the failure that ended the request on the
 * main thread's side (a deadline, a cancel, a lost worker, a broken channel).
 * @typedef {{ error?: Failure, [field: string]: any }} Answer
 */

/**
 * An operation of the lifecycle: yields requests, gets answers.
 * @template T
 * @typedef {Generator<Request, T, Answer>} Steps
 */

/**
 * Settings shared by every plugin it loads, and the host functions it
 * offers; each platform's Host adds `load`, which loads a plugin with them:
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
export class HostSettings {
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
   * The host's settings and host functions with `options` added.
   * @param {import('./options.js').LoadOptions} [options]
   * @returns {import('./options.js').LoadOptions}
   */
  optionsFor(options = {}) {
    return mergeOptions({ ...this.#options, hostFunctions: this.#functions }, options);
  }
}

/**
 * One plugin's lifecycle. Not API: each platform's Plugin holds one,
 * privately, runs its operations with its driver, and tells it when a
 * request is running (`busy`), so that a handler's call back into the
 * plugin is refused (CALL-8).
 */
export class Lifecycle {
  /**
   * Runs the static checks (HOST-1) and the rewrite of the memory and
   * tables (LIM-1, LIM-2, LIM-8); the platform compiles `moduleBytes`
   * and sets `module`. Throws PabiError when the plugin cannot be loaded.
   * @param {Uint8Array} input the module
   * @param {import('./options.js').LoadOptions} options
   * @param {import('./options.js').Output} output where the default logs go
   */
  constructor(input, options, output) {
    const settings = readOptions(options, output);
    /** @type {import('./options.js').Limits} */
    this.limits = settings.limits;
    const limits = this.limits;
    const functions = settings.hostFunctions;
    const checked = checkPlugin(input, {
      allow: settings.allow, budget: limits, abi: settings.abi, offers: (name, plugin) => handlerFor(functions, name, plugin) !== null,
    });
    /** The plugin's metadata (META-1), as declared. */
    this.metadata = checked.metadata;
    /** @type {string[]} the names of the plugin's functions, for call() */
    this.functions = [...checked.functions.keys()];
    /** @type {Map<string, string>} function name → export name */
    this.exports = checked.functions;
    /** @type {Set<string>} the lifecycle exports the plugin has */
    this.lifecycle = checked.lifecycle;
    this.capabilities = checked.granted;
    // CALL-5: each declared host call with its handler, or null for an
    // optional one the application does not offer to this plugin.
    /** @type {Map<string, import('./host.js').Handler | null>} */
    this.handlers = new Map([...checked.hostCalls.keys()].map((name) => [name, handlerFor(functions, name, this.metadata.name)]));
    this.env = settings.env;
    /** @type {(level: number, text: string) => void} */
    this.onLog = options.onLog ?? defaultLog(this.metadata.name, output);
    /** @type {(text: string) => void} */
    this.onHostLog = settings.onHostLog;
    this.crashLoop = settings.crashLoop;
    /** @type {number[]} the times of recent failures (LIFE-7) */
    this.failures = [];
    this.live = false;
    // CALL-8: set by the driver while a request of this plugin's instance
    // runs, so that a handler cannot call into it.
    /** @type {Request | null} */
    this.busy = null;
    this.canceller = new Canceller();
    this.operations = new Operations(this.canceller);
    // How deep the public operations nest (a call that reloads the instance
    // runs a load): only the outermost numbers the operation.
    this.depth = 0;

    const memory = checked.module.memories[0];
    this.capPages = Math.min(65536, Math.floor(limits.maxMemory / PAGE));
    if (memory.min > this.capPages) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-1] the initial memory of ${memory.min * PAGE} bytes is larger than the cap of ${limits.maxMemory} bytes` });
    }
    const tableCap = limits.maxTableElements;
    const big = checked.module.tables.find((t) => t.min > tableCap);
    if (big) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-8] an initial table of ${big.min} elements is larger than the cap of ${tableCap} elements per table` });
    }
    const total = checked.module.tables.reduce((n, t) => n + (t.max === null ? tableCap : Math.min(t.max, tableCap)), 0);
    if (total > limits.maxTotalTableElements) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-8] the plugin's ${checked.module.tables.length} tables may grow to ${total} elements together, more than this host's cap of ${limits.maxTotalTableElements}` });
    }
    // LIM-13: the configuration is refused by its length before any code runs.
    /** @type {Uint8Array | Oversized} */
    this.config = options.config instanceof Oversized ? options.config : toBytes(options.config ?? NO_BYTES);
    this.checkLength(this.config.length, 'the configuration');
    // LIM-1, LIM-2, LIM-8: see rewrite.js.
    let rewritten;
    try {
      rewritten = rewriteModule(input, checked.module, { capPages: this.capPages, tableCap });
    } catch (e) {
      if (e instanceof BinaryError && e.clause === 'LIM-12') throw new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] ${e.message}` });
      throw e;
    }
    /** @type {Uint8Array} the rewritten module, for the platform to compile */
    this.moduleBytes = rewritten.bytes;
    /** @type {string | null} the name of the export the rewrite added, if any */
    this.refusedExport = rewritten.refusedExport;
    /** @type {WebAssembly.Module | null} set by the platform once compiled */
    this.module = null;
  }

  /**
   * A failed compile of the rewritten module, as the error to throw. The
   * module validated before the rewrite; the engine refusing it now means
   * the rewrite took it past one of the engine's own size limits.
   * @param {any} e
   */
  static compileFailure(e) {
    if (e instanceof WebAssembly.CompileError) return new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] this host's rewrite of the module passes a limit of its engine: ${e.message}` });
    // Anything else (the engine out of memory while compiling) is the
    // engine's failure, not the plugin's (ERR-6).
    return new PabiError(KINDS.HOST_FAILURE, { detail: `the engine could not compile the module: ${e && e.message}` });
  }

  // LIM-13: bytes the plugin would read through input_read, refused by
  // length (the kind leaves the instance as it was).
  /**
   * @param {number} length
   * @param {string} what
   */
  checkLength(length, what) {
    if (length > this.limits.maxInput) {
      throw new PabiError(KINDS.INPUT_LIMIT, { detail: `[LIM-13] ${what} is ${length} bytes, longer than ${this.limits.maxInput}` });
    }
  }

  /**
   * Runs the application's handler of one host call of the plugin (the
   * worker asks only for a declared, offered name: CALL-3, CALL-5).
   * @param {Request} req
   * @param {{ name: string, request: Uint8Array }} call
   */
  serveHostCall(req, { name, request }) {
    const exportName = /** @type {string} */ (req.export);
    const context = Object.freeze({
      plugin: this.metadata.name,
      function: exportName.startsWith('pabi_fn_') ? exportName.slice(8) : exportName,
      hostCall: name,
    });
    return runHandler(this.handlers.get(name), request, context, this.limits.maxReply);
  }

  /**
   * CALL-8, HOST-10: a handler that calls into this plugin while its
   * instance waits for that handler is refused before any plugin code
   * runs. The error is HOST_FAILURE (the application's mistake, not the
   * plugin's), the instance and the crash-loop count are left as they
   * were, and the handler sees the error like any other: thrown, it
   * becomes the E_FAILED message the plugin reads.
   * @param {string} what
   */
  refuseReentry(what) {
    if (this.busy) {
      throw new PabiError(KINDS.HOST_FAILURE, {
        clause: 'CALL-8',
        detail: `[CALL-8] ${what} was called on plugin "${this.metadata.name}" while its instance runs ${this.busy.export ?? 'instantiation'} and waits for a host call's handler; a handler must not call into the instance whose host call it serves`,
      });
    }
  }

  /**
   * Runs one public operation, numbered so that a Canceller can cancel it
   * (cancel.js); an operation inside another is part of it.
   * @template T
   * @param {Steps<T>} steps
   * @returns {Steps<T>}
   */
  *operation(steps) {
    if (this.depth++ === 0) this.operations.begin();
    try {
      return yield* steps;
    } finally {
      if (--this.depth === 0) this.operations.end();
    }
  }

  /**
   * Hands the call's log records to onLog, then says once what the cap
   * dropped (LIM-11). The driver calls it once the request has ended, so
   * that onLog may call the plugin again.
   * @param {{ records: Uint8Array, droppedRecords: number, droppedBytes: number, unstored: number, cap: number }} log
   * @param {string} exportName
   */
  deliverLog(log, exportName) {
    const { records } = log;
    const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
    for (let at = 0; at < records.length;) {
      const level = records[at];
      const len = view.getUint32(at + 1, true);
      this.onLog(level, DECODER.decode(records.subarray(at + 5, at + 5 + len)));
      at += 5 + len;
    }
    if (log.droppedRecords || log.droppedBytes) {
      this.onHostLog(`[LIM-11] the call of ${exportName} passed the log cap of ${log.cap} bytes: ${log.droppedRecords} log records and ${log.droppedBytes} bytes of log text were dropped`);
    }
    if (log.unstored) this.onHostLog(`the call of ${exportName} made ${log.unstored} more log records than this host shows; they were not shown`);
  }

  /**
   * Runs one export in `phase` with `input`; gives { value, output, message } or throws.
   * @param {string} exportName
   * @param {string} phase
   * @param {Uint8Array} input
   * @param {number[]} args
   * @returns {Steps<{ value: number, output: Uint8Array, message: Uint8Array }>}
   */
  *invoke(exportName, phase, input, args) {
    const res = yield { op: 'invoke', export: exportName, phase, input, args };
    if (res.error) this.fail(res.error);
    return /** @type {any} */ (res);
  }

  /**
   * Throws the error of a failed request. A HOST_FAILURE has already made
   * the driver stop the worker.
   * @param {Failure} error
   * @returns {never}
   */
  fail(error) {
    if (error.kind === KINDS.HOST_FAILURE) {
      // The host's own code failed (ERR-6), in the worker or in the
      // channel, not the plugin. LIFE-7 does not count it, as the plugin
      // did nothing wrong; the next call starts on a fresh instance.
      this.live = false;
      throw new PabiError(KINDS.HOST_FAILURE, { detail: error.detail });
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

  /**
   * Makes a fresh instance: `_initialize`, then `pabi_init` with the
   * configuration (LIFE-1, LIFE-2). loadPlugin does it once; a call after
   * the instance died does it again (LIFE-6). Throws CRASH_LOOP after too
   * many failures in a row (LIFE-7).
   * @returns {Steps<void>}
   */
  *load() {
    this.refuseReentry('load()');
    yield* this.operation(this.#load());
  }

  /** @returns {Steps<void>} */
  *#load() {
    this.live = false;
    const now = Date.now();
    const recent = this.failures.filter((t) => now - t < this.crashLoop.windowMs);
    if (recent.length >= this.crashLoop.max) {
      throw new PabiError(KINDS.CRASH_LOOP, { detail: `[LIFE-7] ${recent.length} failures within ${this.crashLoop.windowMs} ms` });
    }
    const res = yield {
      op: 'instantiate', module: this.module, wasi: this.metadata.profile === 'wasi',
      capabilities: this.capabilities, env: this.env, capPages: this.capPages, refusedExport: this.refusedExport,
      // The caps of every call of the instance, sent once rather than with each call.
      maxOutput: this.limits.maxOutput, maxLog: this.limits.maxLog, maxRequest: this.limits.maxRequest,
      // CALL-3, CALL-5: the declared names, and whether each is offered.
      hostCalls: Object.fromEntries([...this.handlers].map(([name, h]) => [name, h !== null])),
    };
    if (res.error) this.fail(res.error);
    try {
      if (this.lifecycle.has('_initialize')) yield* this.invoke('_initialize', '_initialize', NO_BYTES, []);
      if (this.lifecycle.has('pabi_init')) {
        const config = toBytes(this.config);
        const r = yield* this.invoke('pabi_init', 'pabi_init', config, [config.length]);
        this.status(r); // a failed pabi_init fails the load (LIFE-2, ERR-7)
      }
    } catch (e) {
      // A failed init counts for LIFE-7 (dead kinds were counted by fail());
      // a failure of the host itself, or a cancel, does not.
      if (e instanceof PabiError && !DEAD_KINDS.has(e.kind) && e.kind !== KINDS.HOST_FAILURE && e.kind !== KINDS.CANCELLED) this.countFailure();
      this.live = false;
      throw e;
    }
    this.live = true;
  }

  /**
   * Maps a returned value to the result (host-guide section 9, step 6).
   * @param {{ value: number, output: Uint8Array, message: Uint8Array }} r
   * @returns {Uint8Array}
   */
  status(r) {
    const s = r.value;
    if (s === 0) return r.output;
    if ((s >= 1 && s <= 4) || (s >= 64 && s <= 127)) {
      const described = s >= 64 ? this.metadata.statuses?.[String(s)] : STATUS_NAMES[s];
      throw new PabiError(KINDS.PLUGIN_ERROR, { status: s, pluginMessage: r.message, detail: `status ${s}${described ? ` (${described})` : ''}` });
    }
    const why = s >= 5 && s <= 63 ? '[ERR-2] a reserved status' : '[ERR-4] not a status';
    throw new PabiError(KINDS.UNKNOWN_STATUS, { status: s, detail: `${s}, ${why}` });
  }

  /** @returns {Steps<void>} */
  *ensureLive() {
    if (!this.live) yield* this.#load();
  }

  /**
   * A call that returned a status, whatever it was, ends a run of
   * consecutive failures (LIFE-7).
   * @param {{ value: number, output: Uint8Array, message: Uint8Array }} r
   */
  returned(r) {
    if (this.failures.length) this.failures = [];
    return this.status(r);
  }

  // --- calls (host-guide section 9) --------------------------------------
  //
  // Each public operation checks what it refuses before any plugin code
  // runs when it is called, and returns the steps of a private generator
  // method: a generator function made anew for each call (a closure)
  // costs V8 several microseconds a call, a method almost nothing.

  /**
   * The checks of call() that run before any plugin code, then the call.
   * What it refuses first: UNKNOWN_FUNCTION, then INPUT_LIMIT (LIM-13).
   * The checks run when the generator is made, not at its first step, so
   * that a platform can throw them at once.
   * @param {string} name
   * @param {import('./options.js').BytesLike | Oversized} input
   * @returns {Steps<Uint8Array>}
   */
  call(name, input = NO_BYTES) {
    this.refuseReentry(`call("${name}")`);
    const exportName = this.exports.get(name);
    if (!exportName) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: `"${name}"` });
    this.checkLength(lengthOf(input), 'the input');
    const bytes = toBytes(input);
    return this.operation(this.#call(exportName, bytes));
  }

  /**
   * @param {string} exportName
   * @param {Uint8Array} bytes
   * @returns {Steps<Uint8Array>}
   */
  *#call(exportName, bytes) {
    yield* this.ensureLive();
    return this.returned(yield* this.invoke(exportName, 'call', bytes, [bytes.length]));
  }

  /**
   * pabi_state_save on the live instance; gives the state.
   * @returns {Steps<Uint8Array>}
   */
  saveState() {
    this.refuseReentry('saveState()');
    if (!this.lifecycle.has('pabi_state_save')) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: '"pabi_state_save": the plugin does not export the state pair' });
    return this.operation(this.#saveState());
  }

  /** @returns {Steps<Uint8Array>} */
  *#saveState() {
    yield* this.ensureLive();
    return this.returned(yield* this.invoke('pabi_state_save', 'pabi_state_save', NO_BYTES, []));
  }

  /**
   * pabi_state_load on the live instance with `state`.
   * @param {import('./options.js').BytesLike | Oversized} state
   * @returns {Steps<void>}
   */
  loadState(state) {
    this.refuseReentry('loadState()');
    if (!this.lifecycle.has('pabi_state_load')) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: '"pabi_state_load": the plugin does not export the state pair' });
    this.checkLength(lengthOf(state), 'the state');
    return this.operation(this.#loadState(toBytes(state)));
  }

  /**
   * @param {Uint8Array} bytes
   * @returns {Steps<void>}
   */
  *#loadState(bytes) {
    yield* this.ensureLive();
    const r = yield* this.invoke('pabi_state_load', 'pabi_state_load', bytes, [bytes.length]);
    // Anything but OK: the plugin may have adopted part of the state, so the
    // next call runs on a fresh instance without it (LIFE-11).
    if (r.value !== 0) this.live = false;
    this.returned(r);
  }

  /**
   * pabi_shutdown on a live instance (LIFE-4); its failure is only logged.
   * The platform stops the worker afterwards.
   * @returns {Steps<void>}
   */
  close() {
    this.refuseReentry('close()');
    return this.#close();
  }

  /** @returns {Steps<void>} */
  *#close() {
    if (this.live && this.lifecycle.has('pabi_shutdown')) {
      try {
        const r = yield* this.invoke('pabi_shutdown', 'pabi_shutdown', NO_BYTES, []);
        if (r.value !== 0) this.onHostLog(`pabi_shutdown returned status ${r.value}`);
      } catch (e) {
        this.onHostLog(`pabi_shutdown failed: ${e.message}`);
      }
    }
    this.live = false;
  }
}
