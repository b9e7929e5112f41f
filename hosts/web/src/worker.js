// The Web Worker that holds one instance (../../shared/instance.js) for a
// page: requests come as messages and answers go back as messages; a host
// call blocks this worker in Atomics.wait (which a worker may do) until the
// page has written the reply into the shared reply buffer (channel.js).
// `random` is filled from crypto.getRandomValues.

import { makeInstance } from '../../shared/instance.js';
import { STATE, CODE, LENGTH, STARTED, DONE, HOST_CALL, STARTED_AT_OFFSET, now } from './channel.js';

let ctl = null;
let startedAt = null;
let reply = null;

// getRandomValues fills at most 65,536 bytes a call.
function entropy(view) {
  for (let at = 0; at < view.length; at += 65536) crypto.getRandomValues(view.subarray(at, Math.min(view.length, at + 65536)));
}

// The resolution of performance.now() here: browsers coarsen it (to 5 µs
// or more in a cross-origin isolated page), and clock_res_get says so
// (WASI-9). Measured once, the first time it is asked for, as the smallest
// step the clock takes.
let resolution = 0n;
function resolutionNs() {
  if (!resolution) {
    let smallest = Infinity;
    let last = performance.now();
    for (let steps = 0; steps < 5;) {
      const t = performance.now();
      if (t !== last) {
        smallest = Math.min(smallest, t - last);
        last = t;
        steps++;
      }
    }
    resolution = BigInt(Math.max(1, Math.round(smallest * 1e6)));
  }
  return resolution;
}

const { handle, transfers } = makeInstance({
  ask(name, request) {
    // The request is handed over, not copied.
    Atomics.store(ctl, STATE, HOST_CALL);
    self.postMessage({ hostCall: { name, request } }, [request.buffer]);
    // The page answers by setting STARTED, or terminates this worker (a
    // deadline, a cancel); nothing else can end the wait.
    while (Atomics.load(ctl, STATE) === HOST_CALL) Atomics.wait(ctl, STATE, HOST_CALL);
    const n = ctl[LENGTH];
    return { code: ctl[CODE], reply: new Uint8Array(reply, 0, n).slice() };
  },
  started() {
    startedAt[0] = now();
    Atomics.store(ctl, STATE, STARTED);
  },
  entropy,
  monotonicNs: () => BigInt(Math.round(performance.now() * 1e6)),
  resolutionNs,
});

self.onmessage = (e) => {
  const m = e.data;
  if (m.op === 'channel') {
    ctl = new Int32Array(m.control, 0, 3);
    startedAt = new Float64Array(m.control, STARTED_AT_OFFSET, 1);
    reply = m.reply;
    return;
  }
  let answer;
  try {
    answer = handle(m.request);
  } catch (err) {
    answer = { error: { kind: 'HOST_FAILURE', detail: `host error: ${err && err.stack ? err.stack : err}` } };
  }
  Atomics.store(ctl, STATE, DONE);
  self.postMessage({ answer }, transfers(answer));
};
