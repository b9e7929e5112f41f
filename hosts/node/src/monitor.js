// The thread that starts, watches and stops the workers that run
// instances (worker.js), for the main thread (supervisor.js).
//
// The main thread blocks in Atomics.wait during a call, so it cannot see
// the events of a worker it started itself: a worker's 'error' and 'exit'
// arrive through its parent's event loop. A worker that Node stops on its
// own (its heap exhausted, or a start that failed before any of its code
// ran: no memory for a new isolate, no thread) would leave the main thread
// waiting. So this thread, whose event loop runs, is the workers' parent:
// it starts each worker when asked, and when one ends without being asked
// to, it stores why in the DIED slot of the worker's control array and
// wakes the main thread. When a worker has gone, asked to or not, it sets
// EXITED and tells the main thread on the `exits` port (Plugin.closed()).

import { parentPort, workerData, Worker } from 'node:worker_threads';
import { DIED_OUT_OF_MEMORY, DIED_OTHERWISE, EXITED, views, markDead } from './channel.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);
const { exits } = workerData;
// Worker id → { worker, stopping, error }: error is the code of the
// worker's 'error' event, if any.
const running = new Map();

function start({ id, control, workerData: data, transferList, resourceLimits }) {
  const { ctl } = views(control);
  const entry = { worker: null, stopping: false, error: null };
  running.set(id, entry);
  const ended = () => {
    running.delete(id);
    if (!entry.stopping) markDead(ctl, entry.error === 'ERR_WORKER_OUT_OF_MEMORY' ? DIED_OUT_OF_MEMORY : DIED_OTHERWISE);
    Atomics.store(ctl, EXITED, 1);
    exits.postMessage(id);
  };
  try {
    entry.worker = new Worker(WORKER_URL, { workerData: data, transferList, resourceLimits, stdout: false, stderr: false });
  } catch (e) {
    entry.error = e && e.code;
    // The worker's ports came here to be handed on; nobody will use them.
    data.port.close();
    data.calls.close();
    ended();
    return;
  }
  // 'error' comes before 'exit'; unhandled, it would end this thread.
  entry.worker.on('error', (e) => { entry.error = e && e.code; });
  entry.worker.on('exit', ended);
}

parentPort.on('message', (m) => {
  if (m.op === 'start') {
    start(m);
  } else if (m.op === 'stop') {
    const entry = running.get(m.id);
    if (entry) {
      // terminate() stops the thread at its next interrupt check, wherever
      // it is, even in an endless loop.
      entry.stopping = true;
      entry.worker?.terminate();
    }
  }
});
