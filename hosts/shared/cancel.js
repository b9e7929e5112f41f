// @ts-check
// Cancelling a running call. The API is synchronous: while a call runs,
// the thread that made it is blocked, so a call can be cancelled only by
// another thread, or by a host-call handler of the call itself (which runs
// in the calling thread while the plugin waits). A Canceller is two cells
// of shared memory, so that it can be sent to another thread.
//
// Cell CALL holds the number of the plugin's running operation (a call,
// saveState, loadState, a load), 0 between them; cancel() copies it into
// cell CANCEL. The plugin's thread looks at CANCEL while it waits for the
// operation, and ends it when the two match. A cancel that comes after
// its operation ended names an operation that no longer runs, and so
// cannot touch the next one.

const CALL = 0;
const CANCEL = 1;

/**
 * Cancels the call that a plugin runs at the moment cancel() is called: the
 * call ends with the error kind CANCELLED, and the plugin's instance is
 * discarded, as after a timeout; the next call runs on a fresh instance. A
 * cancel is not a failure of the plugin, so it does not count toward the
 * crash loop (LIFE-7).
 *
 * Get one from `plugin.canceller`; to cancel from another thread, send it
 * `canceller.buffer` and make `new Canceller(buffer)` there. A host-call
 * handler can call `plugin.cancel()` instead.
 */
export class Canceller {
  /** @type {Int32Array} */
  #cells;

  /** @param {SharedArrayBuffer} [buffer] the buffer of another Canceller of the same plugin */
  constructor(buffer = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT)) {
    /** The shared memory of the canceller: what to send to another thread. */
    this.buffer = buffer;
    this.#cells = new Int32Array(buffer, 0, 2);
  }

  /**
   * Cancels the call running now, if any: true when there was one. The call
   * ends as soon as its thread looks, within a few milliseconds; a
   * host-call handler that cancels its own call ends it when it returns.
   */
  cancel() {
    const running = Atomics.load(this.#cells, CALL);
    if (running === 0) return false;
    Atomics.store(this.#cells, CANCEL, running);
    return true;
  }
}

/**
 * The plugin's side of a Canceller: numbers its operations and says
 * whether the running one was cancelled. Not API.
 */
export class Operations {
  /** @type {Int32Array} */
  #cells;
  #last = 0;

  /** @param {Canceller} canceller */
  constructor(canceller) {
    this.#cells = new Int32Array(canceller.buffer, 0, 2);
  }

  /** Marks the start of an operation; returns its number. */
  begin() {
    // Positive 32-bit numbers, never 0, which means none.
    this.#last = this.#last === 0x7fffffff ? 1 : this.#last + 1;
    Atomics.store(this.#cells, CALL, this.#last);
    return this.#last;
  }

  end() {
    Atomics.store(this.#cells, CALL, 0);
  }

  /** Whether the running operation was cancelled. */
  cancelled() {
    const running = Atomics.load(this.#cells, CALL);
    return running !== 0 && Atomics.load(this.#cells, CANCEL) === running;
  }
}
