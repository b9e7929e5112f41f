// The call channel between the main thread (plugin.js) and the worker
// thread that runs an instance (worker.js): one shared control array, and
// message ports for the bytes.
//
// Slot STATE says whose turn it is. The side that hands over posts its
// message first and then stores the new state, so a side that sees the
// state change finds the message already queued. Every wait is an
// Atomics.wait on the state value the waiter last read: a change made
// between the read and the wait makes the wait return at once, so no
// wake-up can be lost.
//
// The main thread bounds every wait it makes (plugin.js, exchange): the
// worker must take a request and make an instance within workerStartMs,
// take a call within channelMs, and end it by its deadline (LIM-3), and a message that the state announces must be
// there within channelMs (`bounds`). Passing a bound is HOST_FAILURE with the state
// of both sides (describe), never a hang. The worker's own waits end when
// the main thread answers or terminates it; its wait for the next request
// is idle time, not a call.
//
// Past the state, both sides count what they did and say what they are
// doing, in plain slots that cost a store each, so that a stuck call can
// be told apart from a lost message or a worker that never started.

import { receiveMessageOnPort } from 'node:worker_threads';

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

export function control() {
  const buffer = new SharedArrayBuffer(CONTROL_BYTES);
  return { buffer, ctl: new Int32Array(buffer, 0, SLOTS), startedAt: new Float64Array(buffer, STARTED_AT_OFFSET, 1) };
}

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
 */
export function markDead(ctl, why) {
  Atomics.store(ctl, DIED, why);
  Atomics.store(ctl, STATE, GONE);
  Atomics.notify(ctl, STATE);
}

/** The state of both sides of a channel, in words, for an error or a dump. */
export function describe(ctl) {
  const v = (i) => Atomics.load(ctl, i);
  const died = v(DIED) === DIED_OUT_OF_MEMORY ? ' (the worker died: heap exhausted)' : v(DIED) ? ' (the worker died)' : '';
  return `channel state ${STATES[v(STATE)] ?? v(STATE)}${died}${v(EXITED) ? ' (its thread has gone)' : ''}; `
    + `main thread: ${MAIN_STEPS[v(MAIN_STEP)] ?? v(MAIN_STEP)}; worker: ${WORKER_STEPS[v(WORKER_STEP)] ?? v(WORKER_STEP)}; `
    + `requests posted ${v(POSTS)}, taken ${v(TAKES)}, answered ${v(ANSWERS)}; host calls asked ${v(ASKS)}, answered ${v(REPLIES)}`;
}
