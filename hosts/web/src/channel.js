// @ts-check
// The call channel of a web page to the Web Worker that runs one instance
// (worker.js), the browser's counterpart of ../../node/src/channel.js.
//
// The page's main thread may not block (Atomics.wait throws there), so the
// page's end is asynchronous: a request is posted as a message, and its
// answer comes back as a message event. The worker, though, must block
// inside `host_call` until the page has run the application's handler: it
// posts the host call as a message and waits in Atomics.wait on the shared
// control array, and the page writes the reply into a shared reply buffer
// (growable, up to the largest reply the caps allow) before it changes the
// state. The deadline (LIM-3) runs from the moment the worker enters the
// export, which it records in the control array; a timer of the page looks
// at that time and terminates the worker once the deadline has passed,
// which stops the plugin wherever it is.
//
// Every wait of the page has a bound: a fresh worker must take its first
// request and make an instance within bounds.workerStartMs, a running one
// take a request within bounds.channelMs, and the export end by its
// deadline. Passing a bound is HOST_FAILURE (or TIMEOUT), never a hang.

import { KINDS } from '../../shared/errors.js';

// Slots of the control array (Int32).
export const STATE = 0;
// The code and the length of a host call's reply, written by the page
// before it sets the state back to STARTED.
export const CODE = 1;
export const LENGTH = 2;
const SLOTS = 3;
// Values of STATE: POSTED, a request waits for the worker; STARTED, the
// worker runs an export; DONE, it answered; HOST_CALL, the plugin waits in
// `host_call` for the page.
export const POSTED = 0;
export const STARTED = 1;
export const DONE = 2;
export const HOST_CALL = 3;
// A Float64 past the slots: when the worker entered the current export,
// on the clock of now().
export const STARTED_AT_OFFSET = 16;
export const CONTROL_BYTES = 24;
// The reply buffer starts this large and grows, never past the largest
// reply a handler may give (maxReply, or a failure message of 64 KiB).
const REPLY_START = 65536;

// The bounds of the page's waits, in milliseconds (as on Node).
export const bounds = { workerStartMs: 30000, channelMs: 10000 };

// How often a request looks at the cancel flag when another thread may
// set it (a Canceller sent to a worker of the application).
export const CANCEL_CHECK_MS = 10;

// Milliseconds on a clock that the page and its workers share: each
// global's performance.now() counts from its own origin, and timeOrigin
// puts them on one line.
export function now() {
  return performance.timeOrigin + performance.now();
}

const WORKER_URL = new URL('./worker.js', import.meta.url);
const MAX_DELAY_MS = 0x7fffffff;

/**
 * The page's end of the channel to one worker. A plugin makes one when it
 * needs a worker and drops it once the worker is stopped (a deadline, a
 * cancel, a failure of the host).
 */
export class PageEnd {
  /** @type {Worker} */
  #worker;
  /** @type {((message: any) => void) | null} the pending request's handler of the worker's messages */
  #onMessage = null;
  /** @type {((why: string) => void) | null} the pending request's handler of the worker's end */
  #onLost = null;
  /** @type {(() => void) | null} makes the pending request look at its state now (a cancel) */
  #poke = null;
  #lostWhy = '';

  /** @param {number} maxReply the largest reply a handler may give (LIM-14) */
  constructor(maxReply) {
    this.buffer = new SharedArrayBuffer(CONTROL_BYTES);
    this.ctl = new Int32Array(this.buffer, 0, SLOTS);
    this.startedAt = new Float64Array(this.buffer, STARTED_AT_OFFSET, 1);
    const most = Math.max(REPLY_START, maxReply);
    // @ts-ignore: growable SharedArrayBuffer (ES2024), which both browsers have
    this.reply = new SharedArrayBuffer(REPLY_START, { maxByteLength: most });
    this.ctl[STATE] = DONE;
    this.fresh = true;
    this.stopped = false;
    this.#worker = new Worker(WORKER_URL, { type: 'module' });
    this.#worker.onmessage = (e) => this.#onMessage?.(e.data);
    // A worker whose script fails to load or throws outside a request:
    // the host's failure (ERR-6), never the plugin's.
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#lostWhy = `the worker failed: ${e.message || 'its script could not run'}`;
      this.#onLost?.(this.#lostWhy);
    };
    this.#worker.onmessageerror = () => this.#onLost?.('a message of the worker could not be read');
    this.#worker.postMessage({ op: 'channel', control: this.buffer, reply: this.reply });
  }

  /** Terminates the worker: it stops wherever it is, even in an endless loop. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.#worker.terminate();
  }

  /** Makes the pending request look at its cancel flag now. */
  poke() {
    this.#poke?.();
  }

  /**
   * Sends one request and resolves with its answer. For `invoke`, the
   * deadline runs from the moment the worker starts the export (LIM-3);
   * the plugin's host calls are served meanwhile, synchronously, in this
   * thread. An answer with `error` when the request ended without one;
   * the worker has then been stopped.
   * @param {import('../../shared/lifecycle.js').Request} req
   * @param {{ timeoutMs: number, serveHostCall: (call: { name: string, request: Uint8Array }) => { code: number, reply: Uint8Array }, cancelled: () => boolean, crossThread: boolean }} wait
   * @returns {Promise<import('../../shared/lifecycle.js').Answer>}
   */
  request(req, wait) {
    const { timeoutMs, serveHostCall, cancelled, crossThread } = wait;
    const ctl = this.ctl;
    const takeWithin = this.fresh || req.op === 'instantiate' ? bounds.workerStartMs : bounds.channelMs;
    this.fresh = false;
    const invoke = req.op === 'invoke';
    return new Promise((resolve) => {
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      let takeBy = 0;
      const end = (/** @type {any} */ answer, stop = false) => {
        clearTimeout(timer);
        this.#onMessage = this.#onLost = this.#poke = null;
        if (stop) this.stop();
        resolve(answer);
      };
      const fail = (/** @type {string} */ kind, /** @type {string} */ detail) => end({ error: { kind, detail } }, true);
      // Looks at the request's state and arms the timer for the next look:
      // the deadline, the take bound, or the next cancel check.
      const look = () => {
        clearTimeout(timer);
        if (cancelled()) return fail(KINDS.CANCELLED, `${req.export ?? 'the instantiation'} was stopped`);
        const state = Atomics.load(ctl, STATE);
        const t = now();
        let left;
        if (state === POSTED) {
          takeBy ||= t + takeWithin;
          left = takeBy - t;
          if (left <= 0) return fail(KINDS.HOST_FAILURE, `the worker did not take the request within ${takeWithin} ms during ${req.export ?? 'instantiation'}`);
          // The worker does not say when it starts the export; no deadline
          // can pass sooner than timeoutMs from now.
          if (invoke) left = Math.min(left, Math.max(1, timeoutMs));
        } else if (state === DONE) {
          // The answer is on its way as a message.
          left = bounds.channelMs;
        } else {
          left = this.startedAt[0] + timeoutMs - t;
          if (left <= 0) return fail(KINDS.TIMEOUT, `[LIM-3] the call of ${req.export} ran past its deadline of ${timeoutMs} ms`);
        }
        if (crossThread) left = Math.min(left, CANCEL_CHECK_MS);
        // setTimeout takes at most 2^31 - 1 ms (a longer delay fires at
        // once); a longer deadline is looked at again then.
        timer = setTimeout(look, Math.min(MAX_DELAY_MS, Math.max(1, Math.ceil(left))));
      };
      this.#poke = look;
      this.#onLost = (why) => fail(KINDS.HOST_FAILURE, `${why} (during ${req.export ?? 'instantiation'})`);
      this.#onMessage = (m) => {
        if (m.answer) return end(m.answer);
        if (m.hostCall) {
          // The handler's own failures are replies (runHandler); anything
          // thrown here is the host's, and ends the call rather than
          // leaving it to its deadline.
          try {
            return this.#hostCall(req, m.hostCall, wait, end, fail, look);
          } catch (e) {
            return fail(KINDS.HOST_FAILURE, `host error while serving host call \`${m.hostCall.name}\`: ${e && e.message}`);
          }
        }
        return fail(KINDS.HOST_FAILURE, `the worker sent an unknown message during ${req.export ?? 'instantiation'}`);
      };
      if (this.#lostWhy) return fail(KINDS.HOST_FAILURE, this.#lostWhy);
      Atomics.store(ctl, STATE, POSTED);
      this.#worker.postMessage({ op: 'request', request: req });
      look();
    });
  }

  // One host call of the plugin: runs the application's handler now,
  // while the plugin waits in its worker, then writes the reply into the
  // shared buffer and wakes the worker. The handler's time counts against
  // the deadline: past it, the call ends with TIMEOUT and the plugin never
  // reads the reply (CALL-7). A handler may cancel the call; the plugin
  // then never sees the reply either.
  /**
   * @param {import('../../shared/lifecycle.js').Request} req
   * @param {{ name: string, request: Uint8Array }} call
   * @param {{ timeoutMs: number, serveHostCall: (call: { name: string, request: Uint8Array }) => { code: number, reply: Uint8Array }, cancelled: () => boolean }} wait
   * @param {(answer: any, stop?: boolean) => void} end
   * @param {(kind: string, detail: string) => void} fail
   * @param {() => void} look
   */
  #hostCall(req, call, { timeoutMs, serveHostCall, cancelled }, end, fail, look) {
    const answer = serveHostCall(call);
    if (cancelled()) return fail(KINDS.CANCELLED, `${req.export} was stopped`);
    if (now() >= this.startedAt[0] + timeoutMs) {
      return fail(KINDS.TIMEOUT, `[CALL-7] the call of ${req.export} ran past its deadline of ${timeoutMs} ms while the handler of \`${call.name}\` ran`);
    }
    const n = answer.reply.byteLength;
    // @ts-ignore: growable SharedArrayBuffer
    if (n > this.reply.byteLength) this.reply.grow(n);
    new Uint8Array(this.reply, 0, n).set(answer.reply);
    this.ctl[CODE] = answer.code;
    this.ctl[LENGTH] = n;
    Atomics.store(this.ctl, STATE, STARTED);
    Atomics.notify(this.ctl, STATE);
    look();
  }
}
