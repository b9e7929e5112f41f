// The main-thread side of the host: loads, calls, deadlines, trap recovery.
//
// Every call into plugin code runs in a worker thread (worker.js). The main
// thread posts the request and waits with Atomics.wait until the worker
// says it is done, at most until the deadline, which runs from the moment
// the worker starts the export. Past the deadline it terminates the worker,
// which ends the call wherever it is (LIM-3); the instance died with the
// worker, and the next call gets a fresh worker and a fresh instance
// (LIFE-5, LIFE-6). Waiting with Atomics.wait and taking the answer with
// receiveMessageOnPort keeps the API synchronous.

import { Worker, MessageChannel } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { checkPlugin, HOST_ABI_TEXT } from './check.js';
import { handlerFor, toHostFunctions, runHandler } from './host.js';
import { rewriteModule, BinaryError } from './binary.js';
import { PabiError, KINDS, DEAD_KINDS, STATUS_NAMES } from './errors.js';
import {
  STATE, POSTED, STARTED, DONE, HOST_CALL, GONE, DIED, MAIN_STEP, MAIN_IDLE, MAIN_WAIT, MAIN_HANDLER, MAIN_RECEIVE,
  MAIN_HOST_CALL, MAIN_STOPPED, POSTS, REPLIES, WORKER_STEP, WORKER_STARTING, DIED_OUT_OF_MEMORY, DIED_OTHERWISE, EXITED,
  bounds, markDead, takeAnnounced, now, control, describe,
} from './channel.js';

// V8 compiles wasm functions lazily, on their first call, which would count
// a large function's compile time against that call's deadline (LIM-3). The
// reference host compiles at load; so does this one: every function is
// compiled when the module is, before any deadline is armed.
setFlagsFromString('--no-wasm-lazy-compilation');

const PAGE = 65536;

export const DEFAULT_LIMITS = Object.freeze({
  timeoutMs: 1000, // LIM-3
  maxMemory: 128 * 1024 * 1024, // LIM-1
  maxOutput: 16 * 1024 * 1024, // LIM-5
  fuel: null, // LIM-4: not supported by this host
  stackSizeMB: 4, // LIM-7: V8's stack for the worker, at least 512 KiB
  maxTableElements: 10000, // LIM-8, per table
  // LIM-8 caps each table, not their number. Table elements live in the
  // worker's JavaScript heap, and V8 fills a table while it instantiates,
  // where a heap limit cannot stop it (30,000 tables of 10,000 elements
  // took 3 GB). So the elements all tables may reach together, each at
  // its maximum after the rewrite, are bounded too, at 80 MB of heap.
  maxTotalTableElements: 10000000,
  maxLog: 1024 * 1024, // LIM-11: log text per call, records and stdout/stderr together
  maxModuleSize: 32 * 1024 * 1024, // LIM-12: bytes of the module
  maxFunctions: 100000, // LIM-12: functions the module defines
  maxFunctionSize: 1024 * 1024, // LIM-12: bytes of one function body
  maxInput: 2147483647, // LIM-13: input, configuration and state
  maxRequest: 1024 * 1024, // LIM-14: a host call's request
  maxReply: 1024 * 1024, // LIM-14: a host call's reply
  // The JavaScript heap of the worker that runs an instance. The host
  // keeps its own per-call data in byte buffers outside that heap; what
  // lives in it is the plugin's tables and the host's bookkeeping. A
  // worker that exhausts it is stopped and the call is MEMORY_LIMIT.
  heapMB: 256,
});

const MONITOR_URL = new URL('./monitor.js', import.meta.url);

// One monitor thread starts, watches and stops every worker of the
// process (monitor.js); unref'd, so it never keeps the process alive. It
// says on `exits` when a worker's thread has gone; that port keeps the
// process alive only while a stopped worker has not gone, as a terminated
// Worker would.
let monitor = null;
let exits = null;
const gone = new Map(); // worker id → resolve of its exit promise
// Worker id → control array, of every worker the monitor runs and this
// thread has not stopped: if the monitor itself ends, they end with it.
const running = new Map();
let nextWorkerId = 1;
function supervisor() {
  if (!monitor) {
    const channel = new MessageChannel();
    exits = channel.port1;
    exits.on('message', (id) => {
      gone.get(id)?.();
      gone.delete(id);
      if (!gone.size) exits.unref();
    });
    exits.unref();
    try {
      monitor = new Worker(MONITOR_URL, {
        workerData: { exits: channel.port2 }, transferList: [channel.port2], resourceLimits: { maxOldGenerationSizeMb: 32 },
      });
    } catch (e) {
      // No thread for it (EAGAIN under a process or thread limit): the
      // host's failure (ERR-6); the next call tries again.
      exits.close();
      exits = null;
      throw new PabiError(KINDS.HOST_FAILURE, { detail: `the host could not start its monitor thread: ${e && e.message}` });
    }
    monitor.unref();
    // The monitor's own failure ends it, and its workers with it. Its
    // 'exit' comes when this thread's event loop runs, between calls or
    // while a caller awaits; a call blocked at that moment ends by its
    // bound. The next call starts a new monitor.
    monitor.on('error', () => {});
    monitor.on('exit', () => {
      monitor = null;
      for (const ctl of running.values()) {
        markDead(ctl, DIED_OTHERWISE);
        Atomics.store(ctl, EXITED, 1);
      }
      running.clear();
      for (const resolve of gone.values()) resolve();
      gone.clear();
      exits.close();
      exits = null;
    });
  }
  return monitor;
}

// A promise that resolves when the worker `id`, of control array `ctl`,
// has gone. The monitor sets EXITED before it says so on `exits`, so a
// worker whose message came and went unawaited is seen as gone here.
function exitOf(id, ctl) {
  if (Atomics.load(ctl, EXITED) || !exits) return Promise.resolve();
  return new Promise((resolve) => {
    gone.set(id, resolve);
    exits.ref();
  });
}

const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];
const DECODER = new TextDecoder();

// SEC-3: plugin text reaches a terminal only with its control characters,
// escape sequences and line breaks escaped, so that it cannot move the
// cursor, rewrite earlier lines or forge a record.
export function escapeText(text) {
  // JSON escapes C0 controls only; DEL, the C1 controls (U+009B is a
  // terminal's CSI) and the line and paragraph separators too (SEC-3).
  return JSON.stringify(text).slice(1, -1)
    .replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function defaultLog(pluginName) {
  return (level, text) => {
    process.stderr.write(`[${pluginName}] ${LEVELS[level]}: ${escapeText(text)}\n`);
  };
}

/**
 * Stands for bytes too long to hold in memory, known only by their length,
 * so that an input, configuration or state past LIM-13 can be refused by
 * its length (the adapter makes one from the size of a file it does not
 * read). Accepted wherever the API takes bytes.
 */
export class Oversized {
  constructor(length) {
    this.length = length;
  }
}

/**
 * Loads a plugin: the static checks (HOST-1), then a first instance with
 * `_initialize` and `pabi_init` (LIFE-1, LIFE-2). Throws PabiError when the
 * load fails.
 *
 * options.config   configuration bytes for pabi_init (default empty)
 * options.limits   any of DEFAULT_LIMITS (LIM-1 to LIM-13)
 * options.allow    capabilities the host allows (WASI-5); `fs:` ones are never granted
 * options.env      values for `env:NAME` capabilities
 * options.onLog    (level, text) => void, the plugin's records; default: standard error, escaped
 * options.onHostLog (text) => void, the host's own lines (a call's dropped log
 *                  text, a failed pabi_shutdown); default: standard error
 * options.crashLoop { max, windowMs } (LIFE-7), default { max: 5, windowMs: 60000 }
 * options.hostFunctions HostFunction objects, or { name, handler, onlyFor }
 *                  records, that the application offers to host calls
 *                  (CALL-4, CALL-5; host.js); default none
 * options.abi      the ABI version the host offers, '1.1' (default) or '1.0'
 *                  (CALL-9): at '1.0' a plugin declaring 1.1 is VERSION_MISMATCH
 */
export function loadPlugin(bytes, options = {}) {
  const plugin = new Plugin(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), options);
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
  constructor(options = {}) {
    this.options = { ...options };
    this.functions = toHostFunctions(options.hostFunctions);
  }

  /**
   * Offers `handler(request, context)` under the host-call `name` (see
   * HostFunction in host.js); options.onlyFor names the plugins it is
   * offered to. A later definition of a name replaces an earlier one.
   */
  define(name, handler, options = {}) {
    this.functions = [...this.functions, ...toHostFunctions([{ name, handler, onlyFor: options.onlyFor }])];
    return this;
  }

  /** Loads a plugin with the host's settings and host functions, `options` added. */
  load(bytes, options = {}) {
    return loadPlugin(bytes, {
      ...this.options,
      ...options,
      limits: { ...(this.options.limits ?? {}), ...(options.limits ?? {}) },
      hostFunctions: [...this.functions, ...toHostFunctions(options.hostFunctions)],
    });
  }
}

export class Plugin {
  constructor(bytes, options) {
    this.limits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
    for (const [k, v] of Object.entries(this.limits)) if (v === undefined) this.limits[k] = DEFAULT_LIMITS[k];
    if (this.limits.fuel !== null) {
      // LIM-4: a host that cannot meter fuel refuses a configuration that asks for it.
      throw new PabiError(KINDS.NOT_SUPPORTED, { clause: 'LIM-4', detail: '[LIM-4] V8 offers no fuel metering; this host refuses a fuel budget rather than ignore it' });
    }
    // LIM-14: the caps are at most what an i32 return value can count.
    for (const k of ['maxRequest', 'maxReply']) this.limits[k] = Math.min(this.limits[k], 2147483647);
    const allow = (options.allow ?? []).filter((c) => !c.startsWith('fs:'));
    const functions = toHostFunctions(options.hostFunctions);
    this.abi = options.abi ?? HOST_ABI_TEXT;
    const checked = checkPlugin(bytes, {
      allow, budget: this.limits, abi: this.abi, offers: (name, plugin) => handlerFor(functions, name, plugin) !== null,
    });
    this.metadata = checked.metadata;
    this.functions = [...checked.functions.keys()];
    this.exportsByName = checked.functions;
    this.lifecycle = checked.lifecycle;
    this.capabilities = checked.granted;
    // CALL-5: each declared host call with its handler, or null for an
    // optional one the application does not offer to this plugin.
    this.handlers = new Map([...checked.hostCalls.keys()].map((name) => [name, handlerFor(functions, name, this.metadata.name)]));
    // CALL-8: set while a call of this plugin's instance runs, so that a
    // handler cannot call into it.
    this.busy = null;
    this.env = options.env ?? {};
    this.onLog = options.onLog ?? defaultLog(this.metadata.name);
    this.onHostLog = options.onHostLog ?? ((text) => process.stderr.write(`pabi-node: ${text}\n`));
    this.crashLoop = { max: 5, windowMs: 60000, ...(options.crashLoop ?? {}) };
    this.failures = [];

    const memory = checked.module.memories[0];
    this.capPages = Math.min(65536, Math.floor(this.limits.maxMemory / PAGE));
    if (memory.min > this.capPages) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-1] the initial memory of ${memory.min * PAGE} bytes is larger than the cap of ${this.limits.maxMemory} bytes` });
    }
    const tableCap = this.limits.maxTableElements;
    const big = checked.module.tables.find((t) => t.min > tableCap);
    if (big) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-8] an initial table of ${big.min} elements is larger than the cap of ${tableCap} elements per table` });
    }
    const total = checked.module.tables.reduce((n, t) => n + (t.max === null ? tableCap : Math.min(t.max, tableCap)), 0);
    if (total > this.limits.maxTotalTableElements) {
      throw new PabiError(KINDS.MEMORY_LIMIT, { detail: `[LIM-8] the plugin's ${checked.module.tables.length} tables may grow to ${total} elements together, more than this host's cap of ${this.limits.maxTotalTableElements}` });
    }
    // LIM-13: the configuration is refused by its length before any code runs.
    this.config = options.config instanceof Oversized ? options.config : toBytes(options.config ?? new Uint8Array(0));
    this.checkLength(this.config.length, 'the configuration');
    // LIM-1, LIM-2, LIM-8: see binary.js, rewriteModule.
    let rewritten;
    try {
      rewritten = rewriteModule(bytes, checked.module, { capPages: this.capPages, tableCap });
    } catch (e) {
      if (e instanceof BinaryError && e.clause === 'LIM-12') throw new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] ${e.message}` });
      throw e;
    }
    this.refusedExport = rewritten.refusedExport;
    try {
      this.module = new WebAssembly.Module(rewritten.bytes);
    } catch (e) {
      // The module validated before the rewrite; V8 refusing it now means
      // the rewrite took it past one of V8's own size limits.
      if (e instanceof WebAssembly.CompileError) throw new PabiError(KINDS.MODULE_LIMIT, { detail: `[LIM-12] this host's rewrite of the module passes a limit of its engine: ${e.message}` });
      // Anything else (V8 out of memory while compiling) is the engine's
      // failure, not the plugin's (ERR-6).
      throw new PabiError(KINDS.HOST_FAILURE, { detail: `the engine could not compile the module: ${e && e.message}` });
    }
    // The id of the worker that holds the instance, or null (monitor.js).
    this.workerId = null;
    this.live = false;
  }

  // LIM-13: bytes the plugin would read through input_read, refused by
  // length (the kind leaves the instance as it was).
  checkLength(length, what) {
    if (length > this.limits.maxInput) {
      throw new PabiError(KINDS.INPUT_LIMIT, { detail: `[LIM-13] ${what} is ${length} bytes, longer than ${this.limits.maxInput}` });
    }
  }

  // --- the worker -------------------------------------------------------

  startWorker() {
    const supervising = supervisor();
    const { buffer, ctl, startedAt } = control();
    const { port1, port2 } = new MessageChannel();
    // Host calls and their answers, apart from the requests of `port`.
    const calls = new MessageChannel();
    this.ctl = ctl;
    this.startedAt = startedAt;
    // No request yet: the worker waits for the state to become POSTED.
    ctl[STATE] = DONE;
    this.port = port1;
    this.callPort = calls.port1;
    this.workerId = nextWorkerId++;
    running.set(this.workerId, ctl);
    // The monitor thread starts it (monitor.js), so that a worker that
    // stops on its own is seen while this thread waits.
    supervising.postMessage({
      op: 'start',
      id: this.workerId,
      control: buffer,
      workerData: { control: buffer, port: port2, calls: calls.port2 },
      transferList: [port2, calls.port2],
      resourceLimits: { stackSizeMB: this.limits.stackSizeMB, maxOldGenerationSizeMb: this.limits.heapMB },
    }, [port2, calls.port2]);
    this.port.unref();
    this.callPort.unref();
  }

  stopWorker() {
    if (this.workerId) {
      // The monitor terminates it; the stopping worker is kept, with its
      // channel, so that `closed()` can wait for the thread to be gone and
      // `describeChannels()` can say which has not.
      const stopping = { ctl: this.ctl, exited: false };
      stopping.exit = exitOf(this.workerId, this.ctl).then(() => { stopping.exited = true; });
      this.stopping = [...(this.stopping ?? []).filter((w) => !w.exited), stopping];
      running.delete(this.workerId);
      this.ctl[MAIN_STEP] = MAIN_STOPPED;
      monitor?.postMessage({ op: 'stop', id: this.workerId });
      this.port.close();
      this.callPort.close();
    }
    this.workerId = null;
    this.live = false;
  }

  died() {
    return Atomics.load(this.ctl, DIED) !== 0;
  }

  // A wait of the channel passed its bound (channel.js): the worker is not
  // trusted after that, and the call is the host's failure (ERR-6), with
  // what both sides were doing.
  brokenChannel(req, what) {
    const state = describe(this.ctl);
    this.stopWorker();
    return { error: { kind: KINDS.HOST_FAILURE, detail: `the worker thread ${what} during ${req.export ?? 'instantiation'} (${state})` } };
  }

  // The worker stopped on its own, as the monitor thread saw (monitor.js).
  lostWorker(req) {
    const ctl = this.ctl;
    const why = Atomics.load(ctl, DIED);
    this.stopWorker();
    if (why === DIED_OUT_OF_MEMORY && ctl[WORKER_STEP] !== WORKER_STARTING) {
      // Node stops a worker whose JavaScript heap is exhausted
      // (resourceLimits), which plugin tables can do.
      return { error: { kind: KINDS.MEMORY_LIMIT, detail: `the worker running the instance stopped during ${req.export ?? 'instantiation'}: its heap of ${this.limits.heapMB} MiB was exhausted` } };
    }
    // It never ran this host's code (Node could not start the thread: no
    // memory for a new isolate, say), or it ended for a reason of Node's
    // own: the host's failure (ERR-6), not the plugin's.
    return { error: { kind: KINDS.HOST_FAILURE, detail: `the worker thread ${ctl[WORKER_STEP] === WORKER_STARTING ? 'stopped before it started' : 'stopped'} (${describe(ctl)})` } };
  }

  // Sends one request and waits for its answer. For `invoke`, the deadline
  // runs from the moment the worker starts the export (LIM-3). While it
  // waits, the instance is busy: a host-call handler that calls back into
  // this plugin is refused (CALL-8).
  request(req) {
    let res;
    this.busy = req;
    try {
      res = this.exchange(req);
    } finally {
      this.busy = null;
    }
    // The records go out once the call has ended, so that onLog may call
    // the plugin again as before host calls existed.
    if (res.log) this.deliverLog(res.log, req.export);
    return res;
  }

  exchange(req) {
    const fresh = !this.workerId;
    if (fresh) this.startWorker();
    const ctl = this.ctl;
    // The message is queued before the state says so: the worker takes it
    // as soon as it sees POSTED.
    this.port.postMessage(req);
    ctl[POSTS]++;
    ctl[MAIN_STEP] = MAIN_WAIT;
    Atomics.store(ctl, STATE, POSTED);
    Atomics.notify(ctl, STATE);
    try {
      // Instantiation runs no plugin code and has no deadline; it is bounded
      // as a worker's start is.
      return this.await(req, fresh || req.op === 'instantiate' ? bounds.workerStartMs : bounds.channelMs);
    } finally {
      if (this.workerId) ctl[MAIN_STEP] = MAIN_IDLE;
    }
  }

  // Waits for the answer to `req`, serving the plugin's host calls
  // meanwhile. Every wait has a bound: `takeWithin` for the worker to take
  // the request, the call's deadline once it runs (LIM-3), bounds.channelMs for
  // a message the state announced.
  await(req, takeWithin) {
    const ctl = this.ctl;
    // Set at the first look at a posted request: one clock read for it.
    let takeBy = null;
    const invoke = req.op === 'invoke';
    for (let state; (state = Atomics.load(ctl, STATE)) !== DONE;) {
      if (state === GONE || this.died()) return this.lostWorker(req);
      let left;
      if (state === POSTED) {
        const t = now();
        takeBy ??= t + takeWithin;
        left = takeBy - t;
        if (left <= 0) return this.brokenChannel(req, `did not take the request within ${takeWithin} ms`);
        // The worker does not wake this thread when it starts the export,
        // which would cost a second thread switch per call. No deadline
        // can pass before timeoutMs from now, so this thread looks again
        // then, and from there waits for the deadline the worker's start
        // time gives.
        if (invoke) left = Math.min(left, Math.max(1, this.limits.timeoutMs));
      } else {
        const deadline = this.startedAt[0] + this.limits.timeoutMs;
        if (state === HOST_CALL) {
          const ended = this.serveHostCall(req, deadline);
          if (ended) return ended;
          continue;
        }
        left = deadline - now();
        if (left <= 0) {
          this.stopWorker();
          return { error: { kind: KINDS.TIMEOUT, detail: `[LIM-3] the call of ${req.export} ran past its deadline of ${this.limits.timeoutMs} ms` } };
        }
      }
      Atomics.wait(ctl, STATE, state, left);
    }
    ctl[MAIN_STEP] = MAIN_RECEIVE;
    const got = this.receive(this.port, DONE);
    if (got === null) return this.died() ? this.lostWorker(req) : this.brokenChannel(req, `set DONE but its answer did not arrive within ${bounds.channelMs} ms`);
    return got.message;
  }

  // The message that the state `state` announced on `port` (channel.js,
  // takeAnnounced); null when it is not there, or the worker died.
  receive(port, state) {
    return takeAnnounced(port, this.ctl, state, () => this.died());
  }

  // One host call of the plugin (worker.js, askApplication): runs the
  // application's handler in this thread while the plugin waits, then
  // sends the answer. The handler's time counts against the deadline: when
  // the deadline passed while it ran, the call ends with TIMEOUT and the
  // plugin never sees the reply (CALL-7). This thread cannot stop a
  // synchronous handler, so it waits for the handler to return (CALL-7
  // allows stopping at the deadline; it does not require it). Returns the
  // result that ends the call, or null when the call goes on.
  serveHostCall(req, deadline) {
    const ctl = this.ctl;
    ctl[MAIN_STEP] = MAIN_HOST_CALL;
    const got = this.receive(this.callPort, HOST_CALL);
    if (got === null) return this.died() ? this.lostWorker(req) : this.brokenChannel(req, `asked for a host call that did not arrive within ${bounds.channelMs} ms`);
    const { name, request } = got.message;
    const context = Object.freeze({
      plugin: this.metadata.name,
      function: req.export.startsWith('pabi_fn_') ? req.export.slice(8) : req.export,
      hostCall: name,
    });
    ctl[MAIN_STEP] = MAIN_HANDLER;
    // The worker asks only for a declared, offered name (CALL-3, CALL-5).
    const answer = runHandler(this.handlers.get(name), request, context, this.limits.maxReply);
    if (now() >= deadline) {
      this.stopWorker();
      return { error: { kind: KINDS.TIMEOUT, detail: `[CALL-7] the call of ${req.export} ran past its deadline of ${this.limits.timeoutMs} ms while the handler of \`${name}\` ran` } };
    }
    this.callPort.postMessage(answer, answer.reply.byteLength ? [answer.reply.buffer] : []);
    ctl[REPLIES]++;
    ctl[MAIN_STEP] = MAIN_WAIT;
    Atomics.store(ctl, STATE, STARTED);
    Atomics.notify(ctl, STATE);
    return null;
  }

  // CALL-8, HOST-10: a handler that calls into this plugin while its
  // instance waits for that handler is refused before any plugin code
  // runs. The error is HOST_FAILURE (the application's mistake, not the
  // plugin's), the instance and the crash-loop count are left as they
  // were, and the handler sees the error like any other: thrown, it
  // becomes the E_FAILED message the plugin reads.
  refuseReentry(what) {
    if (this.busy) {
      throw new PabiError(KINDS.HOST_FAILURE, {
        clause: 'CALL-8',
        detail: `[CALL-8] ${what} was called on plugin "${this.metadata.name}" while its instance runs ${this.busy.export ?? 'instantiation'} and waits for a host call's handler; a handler must not call into the instance whose host call it serves`,
      });
    }
  }

  // Hands the call's log records to onLog, then says once what the cap
  // dropped (LIM-11).
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

  // Runs one export in `phase` with `input`; returns { value, output, message } or throws.
  invoke(exportName, phase, input, args) {
    const res = this.request({ op: 'invoke', export: exportName, phase, input, args });
    if (res.error) this.fail(res.error);
    return res;
  }

  fail(error) {
    if (error.kind === KINDS.HOST_FAILURE) {
      // HOST_FAILURE (ERR-6): the host's own code failed in the worker, not
      // the plugin. The worker is not trusted after that, so it is stopped
      // and the next call starts on a fresh instance; LIFE-7 does not count
      // it, as the plugin did nothing wrong.
      this.stopWorker();
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

  load() {
    this.refuseReentry('load()');
    this.live = false;
    const now = Date.now();
    const recent = this.failures.filter((t) => now - t < this.crashLoop.windowMs);
    if (recent.length >= this.crashLoop.max) {
      throw new PabiError(KINDS.CRASH_LOOP, { detail: `[LIFE-7] ${recent.length} failures within ${this.crashLoop.windowMs} ms` });
    }
    const res = this.request({
      op: 'instantiate', module: this.module, wasi: this.metadata.profile === 'wasi',
      capabilities: this.capabilities, env: this.env, capPages: this.capPages, refusedExport: this.refusedExport,
      // The caps of every call of the instance, sent once rather than with each call.
      maxOutput: this.limits.maxOutput, maxLog: this.limits.maxLog, maxRequest: this.limits.maxRequest,
      // CALL-3, CALL-5: the declared names, and whether each is offered.
      hostCalls: Object.fromEntries([...this.handlers].map(([name, h]) => [name, h !== null])),
    });
    if (res.error) this.fail(res.error);
    try {
      if (this.lifecycle.has('_initialize')) this.invoke('_initialize', '_initialize', new Uint8Array(0), []);
      if (this.lifecycle.has('pabi_init')) {
        const r = this.invoke('pabi_init', 'pabi_init', this.config, [this.config.length]);
        this.status(r); // a failed pabi_init fails the load (LIFE-2, ERR-7)
      }
    } catch (e) {
      // A failed init counts for LIFE-7 (dead kinds were counted by fail());
      // a failure of the host itself does not.
      if (e instanceof PabiError && !DEAD_KINDS.has(e.kind) && e.kind !== KINDS.HOST_FAILURE) this.countFailure();
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
      throw new PabiError(KINDS.PLUGIN_ERROR, { status: s, pluginMessage: r.message, detail: `status ${s}${described ? ` (${described})` : ''}` });
    }
    const why = s >= 5 && s <= 63 ? '[ERR-2] a reserved status' : '[ERR-4] not a status';
    throw new PabiError(KINDS.UNKNOWN_STATUS, { status: s, detail: `${s}, ${why}` });
  }

  ensureLive() {
    if (!this.live) this.load();
  }

  // A call that returned a status, whatever it was, ends a run of
  // consecutive failures (LIFE-7).
  returned(r) {
    if (this.failures.length) this.failures = [];
    return this.status(r);
  }

  // --- calls (host-guide section 9) --------------------------------------

  /**
   * What call(name, input) refuses before any plugin code runs:
   * UNKNOWN_FUNCTION, then INPUT_LIMIT (LIM-13) for an input of `length` bytes.
   */
  precheck(name, length) {
    const exportName = this.exportsByName.get(name);
    if (!exportName) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: `"${name}"` });
    this.checkLength(length, 'the input');
    return exportName;
  }

  /** Calls plugin function `name` with `input`; returns the output bytes or throws PabiError. */
  call(name, input = new Uint8Array(0)) {
    this.refuseReentry(`call("${name}")`);
    const exportName = this.precheck(name, lengthOf(input));
    const bytes = toBytes(input);
    this.ensureLive();
    return this.returned(this.invoke(exportName, 'call', bytes, [bytes.length]));
  }

  /** Calls pabi_state_save on the live instance and returns the state. */
  saveState() {
    this.refuseReentry('saveState()');
    if (!this.lifecycle.has('pabi_state_save')) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: '"pabi_state_save": the plugin does not export the state pair' });
    this.ensureLive();
    return this.returned(this.invoke('pabi_state_save', 'pabi_state_save', new Uint8Array(0), []));
  }

  /** Calls pabi_state_load on the live instance with `state`. */
  loadState(state) {
    this.refuseReentry('loadState()');
    if (!this.lifecycle.has('pabi_state_load')) throw new PabiError(KINDS.UNKNOWN_FUNCTION, { detail: '"pabi_state_load": the plugin does not export the state pair' });
    this.checkLength(lengthOf(state), 'the state');
    const bytes = toBytes(state);
    this.ensureLive();
    const r = this.invoke('pabi_state_load', 'pabi_state_load', bytes, [bytes.length]);
    // Anything but OK: the plugin may have adopted part of the state, so the
    // next call runs on a fresh instance without it (LIFE-11).
    if (r.value !== 0) this.live = false;
    this.returned(r);
  }

  /** Discards the plugin: pabi_shutdown on a live instance (LIFE-4), then the worker. */
  close() {
    this.refuseReentry('close()');
    if (this.live && this.lifecycle.has('pabi_shutdown')) {
      try {
        const r = this.invoke('pabi_shutdown', 'pabi_shutdown', new Uint8Array(0), []);
        if (r.value !== 0) this.onHostLog(`pabi_shutdown returned status ${r.value}`);
      } catch (e) {
        this.onHostLog(`pabi_shutdown failed: ${e.message}`);
      }
    }
    this.stopWorker();
  }

  /** Resolves when every worker this plugin started has stopped. */
  async closed() {
    await Promise.all((this.stopping ?? []).map((w) => w.exit));
  }

  /** The channels of the workers that were stopped and have not yet gone (channel.js, describe). */
  describeChannels() {
    const left = (this.stopping ?? []).filter((w) => !w.exited);
    return left.length ? left.map((w) => describe(w.ctl)).join('; ') : 'every stopped worker has gone';
  }
}

/**
 * The control array of the channel to the plugin's current worker, or null
 * (src/channel.js): for a watchdog of the host's own, not an API.
 */
export function channelOf(plugin) {
  return plugin.workerId ? plugin.ctl.buffer : null;
}

function lengthOf(v) {
  if (v instanceof Oversized || v instanceof Uint8Array) return v.length;
  return toBytes(v).length;
}

function toBytes(v) {
  if (v instanceof Oversized) throw new TypeError('bytes known only by their length cannot be read');
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(v);
}
