// @ts-check
// The call channel between the main thread (plugin.js) and the worker
// thread that runs an instance (worker.js): one shared control array, and
// message ports for the bytes. This file holds both ends of it: the layout
// of the array, the main thread's end (MainEnd: post a request, wait for
// its answer within its bounds, serve host calls meanwhile) and the
// worker's end (WorkerEnd: wait for a request, answer it, ask for a host
// call), so that each rule of the exchange is written once.
//
// Slot STATE says whose turn it is. The side that hands over posts its
// message first and then stores the new state, so a side that sees the
// state change finds the message already queued. Every wait is an
// Atomics.wait on the state value the waiter last read: a change made
// between the read and the wait makes the wait return at once, so no
// wake-up can be lost.
//
// The main thread bounds every wait it makes (MainEnd): the worker must
// take a request and make an instance within workerStartMs, take a call
// within channelMs, and end it by its deadline (LIM-3), and a message that
// the state announces must be there within channelMs (`bounds`). Passing a
// bound is HOST_FAILURE with the state of both sides (describe), never a
// hang. The worker's own waits end when the main thread answers or
// terminates it; its wait for the next request is idle time, not a call.
//
// Past the state, both sides count what they did and say what they are
// doing, in plain slots that cost a store each, so that a stuck call can
// be told apart from a lost message or a worker that never started.

import { receiveMessageOnPort } from 'node:worker_threads';
import { KINDS } from '../../shared/errors.js';

export const STATE = 0;
// Values of STATE. POSTED: a request waits for the worker; STARTED: the
// worker runs it; DONE: its answer is posted; HOST_CALL: the plugin waits
// in `host_call` for the application's answer; GONE: the monitor saw the
// worker end on its own (markDead).
export const POSTED = 0;
export const STARTED = 1;
export const DONE = 2;
export const HOST_CALL = 3;
export const GONE = 4;
// Set by the monitor thread when the worker stopped on its own
// (monitor.js): DIED_OUT_OF_MEMORY when Node stopped it for its heap,
// DIED_OTHERWISE for any other end (a start that failed, say).
export const DIED = 1;
export const DIED_OUT_OF_MEMORY = 1;
export const DIED_OTHERWISE = 2;
// What each side is doing (MAIN_STEPS, WORKER_STEPS).
export const MAIN_STEP = 2;
export const WORKER_STEP = 3;
// Counters: requests posted by the main thread, taken and answered by the
// worker; host calls asked by the worker and answered by the main thread.
export const POSTS = 4;
export const TAKES = 5;
export const ANSWERS = 6;
export const ASKS = 7;
export const REPLIES = 8;
// Set by the monitor thread once the worker's thread has gone.
export const EXITED = 9;
const SLOTS = 10;
// A Float64 past the slots: when the worker started the current export,
// on the clock of `now`.
export const STARTED_AT_OFFSET = 40;
export const CONTROL_BYTES = 48;

// Each step's value is its index in the list of its words.
export const MAIN_STEPS = ['idle', 'waiting for the answer', 'running a host-call handler', 'taking the answer', 'taking a host call', 'stopped the worker'];
export const [MAIN_IDLE, MAIN_WAIT, MAIN_HANDLER, MAIN_RECEIVE, MAIN_HOST_CALL, MAIN_STOPPED] = MAIN_STEPS.keys();

export const WORKER_STEPS = ['starting', 'waiting for a request', 'handling a request', 'running the export', 'waiting for a host call\'s answer', 'posting the answer'];
export const [WORKER_STARTING, WORKER_IDLE, WORKER_HANDLE, WORKER_RUN, WORKER_ASK, WORKER_ANSWER] = WORKER_STEPS.keys();

// The bounds of the main thread's waits, in milliseconds. workerStartMs:
// how long a fresh worker may take to start, and an instantiation to end.
// channelMs: how long a worker that runs may take to take a call, and a
// message to be there once the state announced it; both are immediate
// unless the host is broken, so the bound only keeps a broken channel from
// hanging a call. Mutable so that the tests can break a channel and see
// the bound hold in milliseconds.
export const bounds = { workerStartMs: 30000, channelMs: 10000 };

// Milliseconds on the monotonic clock, the same in every thread of the
// process: deadlines compare times taken by both sides, and a wall clock
// that an NTP step moves would move them.
export function now() {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * Takes the message that the state `state` of `ctl` announced on `port`,
 * for either side. It was posted before the state was stored, so it is
 * there, and the clock is read only when it is not: the bound
 * (bounds.channelMs) only keeps a broken channel from hanging. Null past
 * the bound, or once `gone()` says the other side has gone.
 * @param {import('node:worker_threads').MessagePort} port
 * @param {Int32Array} ctl
 * @param {number} state
 * @param {() => boolean} [gone]
 * @returns {{ message: any } | null}
 */
export function takeAnnounced(port, ctl, state, gone = () => false) {
  let got = receiveMessageOnPort(port);
  if (got) return got;
  const by = now() + bounds.channelMs;
  while (!(got = receiveMessageOnPort(port))) {
    if (gone() || now() > by) return null;
    Atomics.wait(ctl, STATE, state, 1);
  }
  return got;
}

/** A new control array, with its views. */
export function control() {
  const buffer = new SharedArrayBuffer(CONTROL_BYTES);
  return { buffer, ctl: new Int32Array(buffer, 0, SLOTS), startedAt: new Float64Array(buffer, STARTED_AT_OFFSET, 1) };
}

/**
 * The views of a control array's buffer.
 * @param {SharedArrayBuffer} buffer
 */
export function views(buffer) {
  return { ctl: new Int32Array(buffer, 0, SLOTS), startedAt: new Float64Array(buffer, STARTED_AT_OFFSET, 1) };
}

const STATES = ['POSTED', 'STARTED', 'DONE', 'HOST_CALL', 'GONE'];

/**
 * Says that the worker of `ctl` ended on its own (`why`: DIED_OUT_OF_MEMORY
 * or DIED_OTHERWISE). The state changes too, so that the main thread wakes
 * whether it was already waiting or was about to: a notify alone, between
 * its check of DIED and its wait, would wake nobody. Once the worker has
 * gone only the main thread writes the state, and it checks DIED after
 * each of its own writes.
 * @param {Int32Array} ctl
 * @param {number} why
 */
export function markDead(ctl, why) {
  Atomics.store(ctl, DIED, why);
  Atomics.store(ctl, STATE, GONE);
  Atomics.notify(ctl, STATE);
}

/**
 * The state of both sides of a channel, in words, for an error or a dump.
 * @param {Int32Array} ctl
 */
export function describe(ctl) {
  const v = (i) => Atomics.load(ctl, i);
  const died = v(DIED) === DIED_OUT_OF_MEMORY ? ' (the worker died: heap exhausted)' : v(DIED) ? ' (the worker died)' : '';
  return `channel state ${STATES[v(STATE)] ?? v(STATE)}${died}${v(EXITED) ? ' (its thread has gone)' : ''}; `
    + `main thread: ${MAIN_STEPS[v(MAIN_STEP)] ?? v(MAIN_STEP)}; worker: ${WORKER_STEPS[v(WORKER_STEP)] ?? v(WORKER_STEP)}; `
    + `requests posted ${v(POSTS)}, taken ${v(TAKES)}, answered ${v(ANSWERS)}; host calls asked ${v(ASKS)}, answered ${v(REPLIES)}`;
}

// --- the main thread's end ---------------------------------------------

/** @typedef {import('../../shared/lifecycle.js').Request} Request */
/** @typedef {import('../../shared/lifecycle.js').Answer} Answer */

/**
 * How MainEnd.request waits.
 * @typedef {object} Wait
 * @property {number} timeoutMs the call's deadline, from the moment the worker starts the export (LIM-3)
 * @property {(call: { name: string, request: Uint8Array }) => { code: number, reply: Uint8Array<ArrayBuffer> }} serveHostCall
 *   runs the application's handler of one host call of the plugin
 * @property {() => boolean} cancelled whether the caller cancelled the request (cancel.js)
 * @property {boolean} crossThread whether another thread may cancel it: its
 *   waits are then cut into slices of CANCEL_CHECK_MS
 */

// How often a wait looks at the cancel flag, when another thread may set
// it: that thread cannot wake this one (it does not know the control
// array of the current worker), so the wait is cut into slices this long.
export const CANCEL_CHECK_MS = 10;

/**
 * The main thread's end of the channel to one worker. The supervisor
 * (supervisor.js) makes one for each worker it starts; it lives until the
 * worker is stopped, after which the plugin starts another.
 */
export class MainEnd {
  /** @type {() => Promise<void>} */
  #stopWorker;

  /**
   * @param {SharedArrayBuffer} buffer the control array's buffer
   * @param {import('node:worker_threads').MessagePort} port requests and their answers
   * @param {import('node:worker_threads').MessagePort} calls host calls and their answers
   * @param {number} heapMB the worker's heap, named when Node stops it for exhausting it
   * @param {() => Promise<void>} stopWorker asks for the worker to be terminated; resolves once its thread has gone
   */
  constructor(buffer, port, calls, heapMB, stopWorker) {
    this.buffer = buffer;
    const { ctl, startedAt } = views(buffer);
    this.ctl = ctl;
    this.startedAt = startedAt;
    this.port = port;
    this.calls = calls;
    this.heapMB = heapMB;
    this.#stopWorker = stopWorker;
    // No request yet: the first one is bounded as the worker's start is.
    this.fresh = true;
    /** @type {Promise<void> | null} resolves when the stopped worker's thread has gone */
    this.exit = null;
    this.exited = false;
  }

  /** Whether the monitor thread saw the worker end on its own. */
  died() {
    return Atomics.load(this.ctl, DIED) !== 0;
  }

  /**
   * Terminates the worker (it stops wherever it is, even in an endless
   * loop). The channel is kept, so that the caller can wait for the thread
   * to be gone (`exit`) and say which has not (describe).
   */
  stop() {
    if (this.exit) return;
    this.ctl[MAIN_STEP] = MAIN_STOPPED;
    this.exit = this.#stopWorker().then(() => { this.exited = true; });
    this.port.close();
    this.calls.close();
  }

  /**
   * Sends one request and waits for its answer. For `invoke`, the deadline
   * runs from the moment the worker starts the export (LIM-3); the
   * plugin's host calls are served meanwhile. An answer with `error` when
   * the request ended without one; the worker has then been stopped,
   * unless the error is the worker's own.
   * @param {Request} req
   * @param {Wait} wait
   * @returns {Answer}
   */
  request(req, wait) {
    const ctl = this.ctl;
    const fresh = this.fresh;
    this.fresh = false;
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
      return this.#await(req, fresh || req.op === 'instantiate' ? bounds.workerStartMs : bounds.channelMs, wait);
    } finally {
      if (!this.exit) ctl[MAIN_STEP] = MAIN_IDLE;
    }
  }

  // Waits for the answer to `req`, serving the plugin's host calls
  // meanwhile. Every wait has a bound: `takeWithin` for the worker to take
  // the request, the call's deadline once it runs (LIM-3), bounds.channelMs
  // for a message the state announced.
  /**
   * @param {Request} req
   * @param {number} takeWithin
   * @param {Wait} wait
   * @returns {Answer}
   */
  #await(req, takeWithin, wait) {
    const ctl = this.ctl;
    const { timeoutMs, cancelled, crossThread } = wait;
    // Set at the first look at a posted request: one clock read for it.
    let takeBy = null;
    const invoke = req.op === 'invoke';
    for (let state; (state = Atomics.load(ctl, STATE)) !== DONE;) {
      if (state === GONE || this.died()) return this.#lost(req);
      if (cancelled()) return this.#cancel(req);
      let left;
      if (state === POSTED) {
        const t = now();
        takeBy ??= t + takeWithin;
        left = takeBy - t;
        if (left <= 0) return this.#broken(req, `did not take the request within ${takeWithin} ms`);
        // The worker does not wake this thread when it starts the export,
        // which would cost a second thread switch per call. No deadline
        // can pass before timeoutMs from now, so this thread looks again
        // then, and from there waits for the deadline the worker's start
        // time gives.
        if (invoke) left = Math.min(left, Math.max(1, timeoutMs));
      } else {
        const deadline = this.startedAt[0] + timeoutMs;
        if (state === HOST_CALL) {
          const ended = this.#hostCall(req, deadline, wait);
          if (ended) return ended;
          continue;
        }
        left = deadline - now();
        if (left <= 0) {
          this.stop();
          return { error: { kind: KINDS.TIMEOUT, detail: `[LIM-3] the call of ${req.export} ran past its deadline of ${timeoutMs} ms` } };
        }
      }
      if (crossThread) left = Math.min(left, CANCEL_CHECK_MS);
      Atomics.wait(ctl, STATE, state, left);
    }
    ctl[MAIN_STEP] = MAIN_RECEIVE;
    const got = this.#receive(this.port, DONE);
    if (got === null) return this.died() ? this.#lost(req) : this.#broken(req, `set DONE but its answer did not arrive within ${bounds.channelMs} ms`);
    return got.message;
  }

  // The message that the state `state` announced on `port` (takeAnnounced);
  // null when it is not there, or the worker died.
  /**
   * @param {import('node:worker_threads').MessagePort} port
   * @param {number} state
   */
  #receive(port, state) {
    return takeAnnounced(port, this.ctl, state, () => this.died());
  }

  // One host call of the plugin (WorkerEnd.ask): runs the application's
  // handler in this thread while the plugin waits, then sends the answer.
  // The handler's time counts against the deadline: when the deadline
  // passed while it ran, the call ends with TIMEOUT and the plugin never
  // sees the reply (CALL-7). This thread cannot stop a synchronous
  // handler, so it waits for the handler to return (CALL-7 allows stopping
  // at the deadline; it does not require it). A handler may cancel the
  // call; the plugin then never sees the reply either. Returns the answer
  // that ends the call, or null when the call goes on.
  /**
   * @param {Request} req
   * @param {number} deadline
   * @param {Wait} wait
   * @returns {Answer | null}
   */
  #hostCall(req, deadline, { timeoutMs, serveHostCall, cancelled }) {
    const ctl = this.ctl;
    ctl[MAIN_STEP] = MAIN_HOST_CALL;
    const got = this.#receive(this.calls, HOST_CALL);
    if (got === null) return this.died() ? this.#lost(req) : this.#broken(req, `asked for a host call that did not arrive within ${bounds.channelMs} ms`);
    ctl[MAIN_STEP] = MAIN_HANDLER;
    const answer = serveHostCall(got.message);
    if (cancelled()) return this.#cancel(req);
    if (now() >= deadline) {
      this.stop();
      return { error: { kind: KINDS.TIMEOUT, detail: `[CALL-7] the call of ${req.export} ran past its deadline of ${timeoutMs} ms while the handler of \`${got.message.name}\` ran` } };
    }
    this.calls.postMessage(answer, answer.reply.byteLength ? [answer.reply.buffer] : []);
    ctl[REPLIES]++;
    ctl[MAIN_STEP] = MAIN_WAIT;
    Atomics.store(ctl, STATE, STARTED);
    Atomics.notify(ctl, STATE);
    return null;
  }

  // The caller cancelled the request (Canceller): the worker is stopped
  // wherever it is, as at a deadline, and the instance is gone with it.
  /** @param {Request} req */
  #cancel(req) {
    this.stop();
    return { error: { kind: KINDS.CANCELLED, detail: `${req.export ?? 'the instantiation'} was stopped` } };
  }

  // A wait of the channel passed its bound: the worker is not trusted
  // after that, and the call is the host's failure (ERR-6), with what both
  // sides were doing.
  /**
   * @param {Request} req
   * @param {string} what
   */
  #broken(req, what) {
    const state = describe(this.ctl);
    this.stop();
    return { error: { kind: KINDS.HOST_FAILURE, detail: `the worker thread ${what} during ${req.export ?? 'instantiation'} (${state})` } };
  }

  // The worker stopped on its own, as the monitor thread saw (monitor.js).
  /** @param {Request} req */
  #lost(req) {
    const ctl = this.ctl;
    const why = Atomics.load(ctl, DIED);
    this.stop();
    if (why === DIED_OUT_OF_MEMORY && ctl[WORKER_STEP] !== WORKER_STARTING) {
      // Node stops a worker whose JavaScript heap is exhausted
      // (resourceLimits), which plugin tables can do.
      return { error: { kind: KINDS.MEMORY_LIMIT, detail: `the worker running the instance stopped during ${req.export ?? 'instantiation'}: its heap of ${this.heapMB} MiB was exhausted` } };
    }
    // It never ran this host's code (Node could not start the thread: no
    // memory for a new isolate, say), or it ended for a reason of Node's
    // own: the host's failure (ERR-6), not the plugin's.
    return { error: { kind: KINDS.HOST_FAILURE, detail: `the worker thread ${ctl[WORKER_STEP] === WORKER_STARTING ? 'stopped before it started' : 'stopped'} (${describe(ctl)})` } };
  }
}

// --- the worker's end --------------------------------------------------

/**
 * The worker's end of the channel (worker.js). The worker waits for
 * requests in Atomics.wait and takes them with receiveMessageOnPort, rather
 * than through its event loop, which would add a wake-up of the loop and
 * an event dispatch to every call. Nothing else needs the loop: a
 * terminated worker is interrupted in Atomics.wait as anywhere else.
 */
export class WorkerEnd {
  /**
   * @param {{ control: SharedArrayBuffer, port: import('node:worker_threads').MessagePort, calls: import('node:worker_threads').MessagePort }} data
   *   the worker's workerData
   */
  constructor({ control, port, calls }) {
    const { ctl, startedAt } = views(control);
    this.ctl = ctl;
    this.startedAt = startedAt;
    this.port = port;
    this.calls = calls;
  }

  /**
   * Answers requests for as long as the worker lives: `handle` gives the
   * answer, and `transfers` the buffers of it that are handed over rather
   * than copied. A `handle` that throws is the host's failure (ERR-6).
   * @param {(req: any) => Answer} handle
   * @param {(res: Answer) => import('node:worker_threads').TransferListItem[]} transfers
   * @returns {never}
   */
  serve(handle, transfers) {
    const { ctl, port } = this;
    for (;;) {
      ctl[WORKER_STEP] = WORKER_IDLE;
      for (let state; (state = Atomics.load(ctl, STATE)) !== POSTED;) Atomics.wait(ctl, STATE, state);
      ctl[WORKER_STEP] = WORKER_HANDLE;
      ctl[TAKES]++;
      // Posted before the state said POSTED.
      const got = receiveMessageOnPort(port);
      let res;
      try {
        if (!got) throw new Error(`the state was POSTED but no request was queued (${describe(ctl)})`);
        res = handle(got.message);
      } catch (e) {
        res = { error: { kind: KINDS.HOST_FAILURE, detail: `host error: ${e && e.stack ? e.stack : e}` } };
      }
      ctl[WORKER_STEP] = WORKER_ANSWER;
      port.postMessage(res, transfers(res));
      ctl[ANSWERS]++;
      Atomics.store(ctl, STATE, DONE);
      Atomics.notify(ctl, STATE);
    }
  }

  /**
   * Says that the export starts now: the deadline runs from here (LIM-3).
   * The main thread, waiting for the end of the call, reads the time when
   * it wakes; it needs no wake-up now.
   */
  started() {
    this.startedAt[0] = now();
    this.ctl[WORKER_STEP] = WORKER_RUN;
    Atomics.store(this.ctl, STATE, STARTED);
  }

  /**
   * Hands a host call to the main thread and waits for its answer:
   * { code, reply }, or null when it did not come within bounds.channelMs
   * of the state's saying so. The worker is terminated instead when the
   * deadline passed while the handler ran (CALL-7), so no answer comes then.
   * @param {string} name
   * @param {Uint8Array} request handed over, not copied
   * @returns {{ code: number, reply: Uint8Array } | null}
   */
  ask(name, request) {
    const ctl = this.ctl;
    this.calls.postMessage({ name, request }, [/** @type {ArrayBuffer} */ (request.buffer)]);
    ctl[ASKS]++;
    ctl[WORKER_STEP] = WORKER_ASK;
    Atomics.store(ctl, STATE, HOST_CALL);
    Atomics.notify(ctl, STATE);
    while (Atomics.load(ctl, STATE) === HOST_CALL) Atomics.wait(ctl, STATE, HOST_CALL);
    ctl[WORKER_STEP] = WORKER_RUN;
    // The answer was posted before the state changed.
    const got = takeAnnounced(this.calls, ctl, STARTED);
    return got ? got.message : null;
  }
}
