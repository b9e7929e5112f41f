// @ts-check
// The main thread's side of the monitor thread (monitor.js), which starts,
// watches and stops every worker that runs an instance (worker.js). Each
// worker started here comes with the main thread's end of its channel
// (channel.js, MainEnd).

import { Worker, MessageChannel } from 'node:worker_threads';
import { PabiError, KINDS } from '../../shared/errors.js';
import { STATE, DONE, DIED_OTHERWISE, EXITED, control, markDead, MainEnd } from './channel.js';

const MONITOR_URL = new URL('./monitor.js', import.meta.url);

// One monitor thread starts, watches and stops every worker of the
// process; unref'd, so it never keeps the process alive. It says on
// `exits` when a worker's thread has gone; that port keeps the process
// alive only while a stopped worker has not gone, as a terminated Worker
// would.
/** @type {Worker | null} */
let monitor = null;
/** @type {import('node:worker_threads').MessagePort | null} */
let exits = null;
/** @type {Map<number, () => void>} worker id → resolve of its exit promise */
const gone = new Map();
// Worker id → control array, of every worker the monitor runs and this
// thread has not stopped: if the monitor itself ends, they end with it.
/** @type {Map<number, Int32Array>} */
const running = new Map();
let nextWorkerId = 1;

function supervisor() {
  if (!monitor) {
    const channel = new MessageChannel();
    const port = channel.port1;
    exits = port;
    port.on('message', (id) => {
      gone.get(id)?.();
      gone.delete(id);
      if (!gone.size) port.unref();
    });
    port.unref();
    try {
      monitor = new Worker(MONITOR_URL, {
        workerData: { exits: channel.port2 }, transferList: [channel.port2], resourceLimits: { maxOldGenerationSizeMb: 32 },
      });
    } catch (e) {
      // No thread for it (EAGAIN under a process or thread limit): the
      // host's failure (ERR-6); the next call tries again.
      port.close();
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
      port.close();
      exits = null;
    });
  }
  return monitor;
}

// A promise that resolves when the worker `id`, of control array `ctl`,
// has gone. The monitor sets EXITED before it says so on `exits`, so a
// worker whose message came and went unawaited is seen as gone here.
/**
 * @param {number} id
 * @param {Int32Array} ctl
 * @returns {Promise<void>}
 */
function exitOf(id, ctl) {
  if (Atomics.load(ctl, EXITED) || !exits) return Promise.resolve();
  const port = exits;
  return new Promise((resolve) => {
    gone.set(id, resolve);
    port.ref();
  });
}

/**
 * Starts a worker with the given stack and heap (resourceLimits), and
 * returns the main thread's end of its channel. The worker makes no
 * instance until it is asked to. Throws HOST_FAILURE when the monitor
 * thread cannot be started.
 * @param {{ stackSizeMB: number, heapMB: number }} limits
 * @returns {MainEnd}
 */
export function startWorker({ stackSizeMB, heapMB }) {
  const supervising = supervisor();
  const { buffer, ctl } = control();
  const requests = new MessageChannel();
  // Host calls and their answers, apart from the requests.
  const calls = new MessageChannel();
  // No request yet: the worker waits for the state to become POSTED.
  ctl[STATE] = DONE;
  const id = nextWorkerId++;
  running.set(id, ctl);
  // The monitor thread starts it (monitor.js), so that a worker that
  // stops on its own is seen while this thread waits.
  supervising.postMessage({
    op: 'start',
    id,
    control: buffer,
    workerData: { control: buffer, port: requests.port2, calls: calls.port2 },
    transferList: [requests.port2, calls.port2],
    resourceLimits: { stackSizeMB, maxOldGenerationSizeMb: heapMB },
  }, [requests.port2, calls.port2]);
  requests.port1.unref();
  calls.port1.unref();
  return new MainEnd(buffer, requests.port1, calls.port1, heapMB, () => {
    // The monitor terminates it.
    const exit = exitOf(id, ctl);
    running.delete(id);
    monitor?.postMessage({ op: 'stop', id });
    return exit;
  });
}
