// The worker thread that holds one instance (../../shared/instance.js) for
// Node: it takes requests through its end of the call channel (channel.js),
// blocks in Atomics.wait for a host call's answer, and fills `random` from
// node:crypto.

import { workerData } from 'node:worker_threads';
import { randomFillSync } from 'node:crypto';
import { makeInstance } from '../../shared/instance.js';
import { Abort } from '../../shared/abort.js';
import { KINDS } from '../../shared/errors.js';
import { WorkerEnd, bounds, describe } from './channel.js';

// Requests and their answers, host calls and theirs (channel.js).
const channel = new WorkerEnd(workerData);

const { handle, transfers } = makeInstance({
  // Hands a host call to the main thread and waits for its answer:
  // { code, reply } (channel.js, WorkerEnd.ask).
  ask(name, request) {
    const answer = channel.ask(name, request);
    if (!answer) {
      throw new Abort(KINDS.HOST_FAILURE, { detail: `the answer to host call \`${name}\` did not arrive within ${bounds.channelMs} ms (${describe(channel.ctl)})` });
    }
    return answer;
  },
  started: () => channel.started(),
  entropy: (buf) => randomFillSync(buf),
  monotonicNs: () => process.hrtime.bigint(),
});

channel.serve(handle, transfers);
