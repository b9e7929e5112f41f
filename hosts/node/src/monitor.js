// A watcher thread that tells the main thread when an instance's worker
// stops on its own. The main thread blocks in Atomics.wait during a call,
// so it cannot see a worker's 'error' or 'exit' events, which arrive
// through its event loop. A worker that exhausts its heap
// (resourceLimits) is stopped by Node without running any more of our
// code; its ports close as it goes, and this thread, whose event loop
// runs, sees the 'close' of the port it shares with that worker, sets
// the DIED slot of the worker's control array and wakes the main thread.

import { parentPort } from 'node:worker_threads';
import { STATE, DIED } from './channel.js';

parentPort.on('message', ({ port, control }) => {
  const ctl = new Int32Array(control);
  port.on('close', () => {
    Atomics.store(ctl, DIED, 1);
    Atomics.notify(ctl, STATE);
  });
  // Listening starts the port, so that its 'close' is delivered.
  port.on('message', () => {});
});
