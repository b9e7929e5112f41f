// @ts-check
// A plugin in a web page: the shared lifecycle (../../shared/lifecycle.js)
// run asynchronously. The page's main thread may not block, so every
// operation returns a Promise; the instance runs in a Web Worker
// (worker.js) reached through channel.js, and past its deadline the worker
// is terminated and the next call gets a fresh one (LIM-3, LIFE-6).

import { Lifecycle, HostSettings } from '../../shared/lifecycle.js';
import { PabiError, KINDS } from '../../shared/errors.js';
import { toBytes } from '../../shared/options.js';
import { FAILURE_CAP } from '../../shared/host.js';
import { PageEnd } from './channel.js';

/** @type {import('../../shared/options.js').Output} */
const OUTPUT = { name: 'pabi-web', writeError: (line) => { console.error(line); } };

/**
 * What a page needs for this host: SharedArrayBuffer, which a browser
 * offers only to a cross-origin isolated page (the COOP and COEP headers).
 * Without it the host cannot make its call channel, and says so at once
 * rather than hang.
 */
export function checkIsolation() {
  if (typeof SharedArrayBuffer !== 'function' || (typeof crossOriginIsolated === 'boolean' && !crossOriginIsolated)) {
    throw new PabiError(KINDS.HOST_FAILURE, {
      detail: 'this page is not cross-origin isolated, so it has no SharedArrayBuffer, which the host\'s call channel needs; serve it with the headers "Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp"',
    });
  }
}

// Limits a page cannot set: a Web Worker has no heap limit and no stack
// size of its own choosing. Asked for, they are refused, never ignored.
/** @param {import('../../shared/options.js').LoadOptions} options */
function refuseUnsupported(options) {
  const limits = options.limits ?? {};
  if (limits.stackSizeMB !== undefined) {
    throw new PabiError(KINDS.NOT_SUPPORTED, { clause: 'LIM-7', detail: '[LIM-7] a browser does not let a page set the stack size of a Web Worker; the browser\'s own stack holds, and its overflow is TRAP stack_overflow' });
  }
  if (limits.heapMB !== undefined) {
    throw new PabiError(KINDS.NOT_SUPPORTED, { detail: 'a browser does not let a page set the JavaScript heap of a Web Worker (heapMB); the memory cap (maxMemory) and the table caps hold' });
  }
}

/**
 * The bytes of a module given as bytes, a Response or a promise of one.
 * The host rewrites the module before it compiles it (the memory cap,
 * LIM-1), so a Response is read to its end rather than compiled as it
 * streams; one longer than the compile budget is refused by its length.
 * @param {import('../../shared/options.js').BytesLike | Response | Promise<Response>} source
 * @param {number} maxModuleSize
 * @returns {Promise<Uint8Array>}
 */
async function moduleBytes(source, maxModuleSize) {
  const given = await source;
  if (typeof Response === 'function' && given instanceof Response) {
    if (!given.ok) throw new PabiError(KINDS.HOST_FAILURE, { detail: `the plugin could not be fetched: HTTP ${given.status} for ${given.url}` });
    const length = Number(given.headers.get('content-length'));
    if (length > maxModuleSize) throw new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] the module is ${length} bytes, more than the cap of ${maxModuleSize} bytes` });
    return new Uint8Array(await given.arrayBuffer());
  }
  return toBytes(/** @type {import('../../shared/options.js').BytesLike} */ (given));
}

// Compiled modules, by the SHA-256 of the bytes compiled (the rewritten
// module, so the caps are part of the key): a page that loads the same
// plugin again, or a second plugin object of it, compiles it once. A
// WebAssembly.Module is immutable, and each plugin object instantiates its
// own. The oldest entry goes past CACHE_ENTRIES.
const CACHE_ENTRIES = 16;
/** @type {Map<string, WebAssembly.Module>} */
const compiled = new Map();

/**
 * The module of `bytes`, compiled once per page.
 * @param {Uint8Array} bytes
 * @returns {Promise<WebAssembly.Module>}
 */
async function compile(bytes) {
  // crypto.subtle exists in a secure context only (https, or 127.0.0.1);
  // without it every load compiles.
  if (!globalThis.crypto?.subtle) return WebAssembly.compile(/** @type {Uint8Array<ArrayBuffer>} */ (bytes));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', /** @type {Uint8Array<ArrayBuffer>} */ (bytes)));
  const key = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  let module = compiled.get(key);
  if (!module) {
    module = await WebAssembly.compile(/** @type {Uint8Array<ArrayBuffer>} */ (bytes));
    compiled.set(key, module);
    if (compiled.size > CACHE_ENTRIES) compiled.delete(compiled.keys().next().value);
  }
  return module;
}

/**
 * Loads a plugin: the static checks (HOST-1), then a first instance with
 * `_initialize` and `pabi_init` (LIFE-1, LIFE-2). Rejects with PabiError
 * when the load fails.
 * @param {import('../../shared/options.js').BytesLike | Response | Promise<Response>} source the module
 * @param {import('../../shared/options.js').LoadOptions} [options]
 * @returns {Promise<Plugin>}
 */
export async function loadPlugin(source, options = {}) {
  checkIsolation();
  refuseUnsupported(options);
  const bytes = await moduleBytes(source, options.limits?.maxModuleSize ?? 32 << 20);
  const core = new Lifecycle(bytes, options, OUTPUT);
  try {
    core.module = await compile(core.moduleBytes);
  } catch (e) {
    throw Lifecycle.compileFailure(e);
  }
  const plugin = new Plugin(core);
  await plugin.load();
  return plugin;
}

/**
 * Settings shared by every plugin it loads, and the host functions it
 * offers (HostSettings in ../../shared/lifecycle.js). Made in a page that
 * is not cross-origin isolated, it throws at once (checkIsolation).
 */
export class Host extends HostSettings {
  /** @param {import('../../shared/options.js').LoadOptions} [options] */
  constructor(options = {}) {
    checkIsolation();
    super(options);
  }

  /**
   * Loads a plugin with the host's settings and host functions, `options` added.
   * @param {import('../../shared/options.js').BytesLike | Response | Promise<Response>} source
   * @param {import('../../shared/options.js').LoadOptions} [options]
   * @returns {Promise<Plugin>}
   */
  load(source, options = {}) {
    return loadPlugin(source, this.optionsFor(options));
  }
}

/**
 * A loaded plugin. One object runs one operation at a time (HOST-9):
 * operations asked for while one runs wait their turn, in order.
 */
export class Plugin {
  /** @type {Lifecycle} */
  #core;
  /** @type {PageEnd | null} the channel to the worker that holds the instance */
  #channel = null;
  /** @type {Promise<unknown>} the end of the last operation asked for */
  #tail = Promise.resolve();
  #crossThread = false;

  /**
   * Made by loadPlugin.
   * @param {Lifecycle} core
   */
  constructor(core) {
    this.#core = core;
    /** The plugin's metadata (META-1), as declared. */
    this.metadata = core.metadata;
    /** @type {string[]} the names of the plugin's functions, for call() */
    this.functions = core.functions;
  }

  #stopWorker() {
    this.#channel?.stop();
    this.#channel = null;
    this.#core.live = false;
  }

  // Runs one request on the instance's worker, starting one if there is
  // none. While the application's handler of a host call runs, the
  // instance is busy: the handler's call back into this plugin is refused
  // (CALL-8).
  /**
   * @param {import('../../shared/lifecycle.js').Request} req
   * @returns {Promise<import('../../shared/lifecycle.js').Answer>}
   */
  async #request(req) {
    const core = this.#core;
    this.#channel ??= new PageEnd(Math.max(core.limits.maxReply, FAILURE_CAP));
    const channel = this.#channel;
    const res = await channel.request(req, {
      timeoutMs: core.limits.timeoutMs,
      serveHostCall: (call) => {
        core.busy = req;
        try {
          return core.serveHostCall(req, call);
        } finally {
          core.busy = null;
        }
      },
      cancelled: () => core.operations.cancelled(),
      crossThread: this.#crossThread,
    });
    // The channel stopped its worker (a deadline, a cancel, a lost worker),
    // or the worker failed in the host's own code (ERR-6): the next call
    // starts another.
    if (channel.stopped || res.error?.kind === KINDS.HOST_FAILURE) this.#stopWorker();
    if (res.log) core.deliverLog(res.log, /** @type {string} */ (req.export));
    return res;
  }

  // Runs an operation of the lifecycle to its end, each request it makes
  // awaited on the channel; an error of the channel is thrown into it.
  /**
   * @template T
   * @param {import('../../shared/lifecycle.js').Steps<T>} steps
   * @returns {Promise<T>}
   */
  async #run(steps) {
    let step = steps.next();
    while (!step.done) {
      let res;
      try {
        res = await this.#request(/** @type {import('../../shared/lifecycle.js').Request} */ (step.value));
      } catch (e) {
        step = steps.throw(e);
        continue;
      }
      step = steps.next(res);
    }
    return step.value;
  }

  // Queues an operation behind those asked for before it (HOST-9). A call
  // from a host-call handler of this plugin is refused at once, before it
  // is queued (CALL-8): the handler is synchronous, and the refusal is
  // thrown to it rather than returned as a rejected promise.
  /**
   * @template T
   * @param {string} what
   * @param {() => import('../../shared/lifecycle.js').Steps<T>} make
   * @returns {Promise<T>}
   */
  #queue(what, make) {
    this.#core.refuseReentry(what);
    const run = this.#tail.then(() => this.#run(make()));
    this.#tail = run.catch(() => {});
    return run;
  }

  /**
   * Makes a fresh instance: `_initialize`, then `pabi_init` with the
   * configuration (LIFE-1, LIFE-2). Rejects with CRASH_LOOP after too
   * many failures in a row (LIFE-7).
   * @returns {Promise<void>}
   */
  load() {
    return this.#queue('load()', () => this.#core.load());
  }

  /**
   * Calls plugin function `name` with `input`; resolves with the output
   * bytes or rejects with PabiError.
   * @param {string} name
   * @param {import('../../shared/options.js').BytesLike | import('../../shared/options.js').Oversized} [input]
   * @returns {Promise<Uint8Array>}
   */
  call(name, input) {
    return this.#queue(`call("${name}")`, () => this.#core.call(name, input));
  }

  /** @returns {Promise<Uint8Array>} pabi_state_save on the live instance */
  saveState() {
    return this.#queue('saveState()', () => this.#core.saveState());
  }

  /**
   * pabi_state_load on the live instance with `state`.
   * @param {import('../../shared/options.js').BytesLike | import('../../shared/options.js').Oversized} state
   * @returns {Promise<void>}
   */
  loadState(state) {
    return this.#queue('loadState()', () => this.#core.loadState(state));
  }

  /**
   * What cancels this plugin's running operation from another thread (a
   * worker of the application): send it `canceller.buffer`. Once it has
   * been asked for, a running call looks for a cancel every 10 ms.
   */
  get canceller() {
    this.#crossThread = true;
    return this.#core.canceller;
  }

  /**
   * Cancels the running operation: it rejects with CANCELLED and its
   * worker is terminated, as at a deadline. True when one was running.
   */
  cancel() {
    const was = this.#core.canceller.cancel();
    // From a handler, the call ends when the handler returns; otherwise
    // the page is free and the request looks now.
    if (was && !this.#core.busy) this.#channel?.poke();
    return was;
  }

  /**
   * Discards the plugin: pabi_shutdown on a live instance (LIFE-4), then
   * the worker.
   * @returns {Promise<void>}
   */
  close() {
    return this.#queue('close()', () => this.#core.close()).finally(() => this.#stopWorker());
  }

  /**
   * Resolves at once: a browser's terminate() ends a worker without an
   * event to wait for, and it runs no more plugin code after it.
   * @returns {Promise<void>}
   */
  async closed() {}
}
