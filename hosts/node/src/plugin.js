// @ts-check
// A plugin on Node: the shared lifecycle (../../shared/lifecycle.js) run
// synchronously.
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
import { Lifecycle, HostSettings } from '../../shared/lifecycle.js';
import { KINDS } from '../../shared/errors.js';
import { toBytes } from '../../shared/options.js';
import { describe } from './channel.js';
import { startWorker } from './supervisor.js';

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

// The host's own lines and the default log go to standard error.
/** @type {import('../../shared/options.js').Output} */
const OUTPUT = { name: 'pabi-node', writeError: (line) => { process.stderr.write(`${line}\n`); } };

/**
 * Loads a plugin: the static checks (HOST-1), then a first instance with
 * `_initialize` and `pabi_init` (LIFE-1, LIFE-2). Throws PabiError when the
 * load fails.
 * @param {import('../../shared/options.js').BytesLike} bytes the module
 * @param {import('../../shared/options.js').LoadOptions} [options]
 * @returns {Plugin}
 */
export function loadPlugin(bytes, options = {}) {
  const plugin = new Plugin(bytes instanceof Uint8Array ? bytes : toBytes(bytes), options);
  plugin.load();
  return plugin;
}

/**
 * Settings shared by every plugin it loads, and the host functions it
 * offers (HostSettings in ../../shared/lifecycle.js):
 *
 *   const host = new Host({ limits: { timeoutMs: 500 } });
 *   host.define('kv.get', (request, cx) => lookup(request), { onlyFor: ['enrich'] });
 *   const plugin = host.load(bytes, { config });
 */
export class Host extends HostSettings {
  /**
   * Loads a plugin with the host's settings and host functions, `options` added.
   * @param {import('../../shared/options.js').BytesLike} bytes
   * @param {import('../../shared/options.js').LoadOptions} [options]
   * @returns {Plugin}
   */
  load(bytes, options = {}) {
    return loadPlugin(bytes, this.optionsFor(options));
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
  /** @type {Lifecycle} */
  #core;
  /** @type {import('./channel.js').MainEnd | null} the channel to the worker that holds the instance */
  #channel = null;
  /** @type {import('./channel.js').MainEnd[]} stopped channels whose worker may not have gone yet */
  #stopping = [];
  // Whether another thread may hold the canceller: only then do the waits
  // of a call look at it every few milliseconds.
  #crossThread = false;

  static {
    channelOfPlugin = (plugin) => plugin.#channel;
  }

  /**
   * Runs the static checks and compiles the module; load() makes the
   * first instance. Throws PabiError when the plugin cannot be loaded.
   * @param {import('../../shared/options.js').BytesLike} bytes the module
   * @param {import('../../shared/options.js').LoadOptions} [options]
   */
  constructor(bytes, options = {}) {
    const core = new Lifecycle(bytes instanceof Uint8Array ? bytes : toBytes(bytes), options, OUTPUT);
    try {
      core.module = compileEagerly(/** @type {Uint8Array<ArrayBuffer>} */ (core.moduleBytes));
    } catch (e) {
      throw Lifecycle.compileFailure(e);
    }
    this.#core = core;
    /** The plugin's metadata (META-1), as declared. */
    this.metadata = core.metadata;
    /** @type {string[]} the names of the plugin's functions, for call() */
    this.functions = core.functions;
  }

  // --- the worker and its channel ---------------------------------------

  #stopWorker() {
    const channel = this.#channel;
    if (channel) {
      channel.stop();
      this.#stopping = [...this.#stopping.filter((c) => !c.exited), channel];
    }
    this.#channel = null;
    this.#core.live = false;
  }

  // Sends one request to the instance's worker, starting one if there is
  // none, and waits for the answer. While it waits, the instance is busy:
  // a host-call handler that calls back into this plugin is refused
  // (CALL-8).
  /**
   * @param {import('../../shared/lifecycle.js').Request} req
   * @returns {import('../../shared/lifecycle.js').Answer}
   */
  #request(req) {
    const core = this.#core;
    let res;
    core.busy = req;
    try {
      this.#channel ??= startWorker(core.limits);
      const channel = this.#channel;
      res = channel.request(req, {
        timeoutMs: core.limits.timeoutMs,
        serveHostCall: (call) => core.serveHostCall(req, call),
        cancelled: () => core.operations.cancelled(),
        crossThread: this.#crossThread,
      });
      // The channel stopped its worker (a deadline, a cancel, a lost
      // worker), or the worker failed in the host's own code and is not
      // trusted after that (ERR-6): the next call starts another.
      if (channel.exit || res.error?.kind === KINDS.HOST_FAILURE) this.#stopWorker();
    } finally {
      core.busy = null;
    }
    // The records go out once the call has ended, so that onLog may call
    // the plugin again as before host calls existed.
    if (res.log) core.deliverLog(res.log, req.export);
    return res;
  }

  // Runs an operation of the lifecycle to its end, each request it makes
  // on the channel; an error of the channel is thrown into it.
  /**
   * @template T
   * @param {import('../../shared/lifecycle.js').Steps<T>} steps
   * @returns {T}
   */
  #run(steps) {
    let step = steps.next();
    while (!step.done) {
      let res;
      try {
        res = this.#request(/** @type {import('../../shared/lifecycle.js').Request} */ (step.value));
      } catch (e) {
        step = steps.throw(e);
        continue;
      }
      step = steps.next(res);
    }
    return step.value;
  }

  /**
   * Makes a fresh instance: `_initialize`, then `pabi_init` with the
   * configuration (LIFE-1, LIFE-2). loadPlugin does it once; a call after
   * the instance died does it again (LIFE-6). Throws CRASH_LOOP after too
   * many failures in a row (LIFE-7).
   */
  load() {
    this.#run(this.#core.load());
  }

  /**
   * Calls plugin function `name` with `input`; returns the output bytes or
   * throws PabiError. What it refuses before any plugin code runs:
   * UNKNOWN_FUNCTION, then INPUT_LIMIT (LIM-13).
   * @param {string} name
   * @param {import('../../shared/options.js').BytesLike | import('../../shared/options.js').Oversized} [input]
   * @returns {Uint8Array}
   */
  call(name, input) {
    return this.#run(this.#core.call(name, input));
  }

  /**
   * Calls pabi_state_save on the live instance and returns the state.
   * @returns {Uint8Array}
   */
  saveState() {
    return this.#run(this.#core.saveState());
  }

  /**
   * Calls pabi_state_load on the live instance with `state`.
   * @param {import('../../shared/options.js').BytesLike | import('../../shared/options.js').Oversized} state
   */
  loadState(state) {
    this.#run(this.#core.loadState(state));
  }

  /**
   * What cancels this plugin's running call (../../shared/cancel.js): its
   * `cancel()`, or that of `new Canceller(canceller.buffer)` in another
   * thread, ends the call with CANCELLED. Once it has been asked for, a
   * running call looks for a cancel every few milliseconds.
   * @returns {import('../../shared/cancel.js').Canceller}
   */
  get canceller() {
    this.#crossThread = true;
    return this.#core.canceller;
  }

  /**
   * Cancels the running call, from a host-call handler of that call (the
   * only code that runs in this thread while it waits); the call ends with
   * CANCELLED when the handler returns. True when a call was running.
   */
  cancel() {
    return this.#core.canceller.cancel();
  }

  /** Discards the plugin: pabi_shutdown on a live instance (LIFE-4), then the worker. */
  close() {
    this.#run(this.#core.close());
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
