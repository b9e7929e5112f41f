// The call channel between the main thread and an instance's worker
// (src/channel.js): every wait of the main thread has a bound, and a
// channel broken on purpose ends the call with HOST_FAILURE naming what
// each side did, never a hang; the plugin then serves the next call on a
// fresh worker. A short stress run under CPU contention checks every
// result (bench/stress.js runs the long one).

import test from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel } from 'node:worker_threads';
import { loadPlugin } from '../src/index.js';
import { bounds, control, STATE, DONE } from '../src/channel.js';
import { channelOf } from '../src/plugin.js';
import { ioPlugin, failure } from './helpers.js';
import { stress } from '../bench/stress.js';


// Runs `f` with the channel's bounds set to `ms`, so that a broken channel
// is found in milliseconds.
function withBounds(ms, f) {
  const saved = { ...bounds };
  Object.assign(bounds, { channelMs: ms, workerStartMs: ms });
  try {
    return f();
  } finally {
    Object.assign(bounds, saved);
  }
}

test('a request the worker never sees is HOST_FAILURE with the state of both sides, and the next call gets a fresh worker', { timeout: 60000 }, () => {
  const p = loadPlugin(ioPlugin());
  try {
    // The main thread now signals on an array the worker does not watch.
    const lost = control().ctl;
    lost[STATE] = DONE;
    channelOf(p).ctl = lost;
    const e = withBounds(100, () => failure(() => p.call('echo', new Uint8Array([1, 2]))));
    assert.equal(e.kind, 'HOST_FAILURE');
    assert.match(e.message, /did not take the request within 100 ms during pabi_fn_echo/);
    assert.match(e.message, /channel state POSTED; main thread: waiting for the answer; .*requests posted 1, taken 0, answered 0/);
    assert.deepEqual([...p.call('echo', new Uint8Array([3, 4]))], [3, 4]);
  } finally {
    p.close();
  }
});

test('a request or an answer that the state announces but the port does not hold is HOST_FAILURE, never a wait for it', { timeout: 60000 }, () => {
  const p = loadPlugin(ioPlugin());
  try {
    // The main thread posts to a port nobody reads, and reads its answer
    // from that port: the worker finds no request, the main thread no answer.
    const { port1 } = new MessageChannel();
    channelOf(p).port = port1;
    const e = withBounds(100, () => failure(() => p.call('echo', new Uint8Array([1]))));
    assert.equal(e.kind, 'HOST_FAILURE');
    assert.match(e.message, /set DONE but its answer did not arrive within 100 ms/);
    // The load posted the instantiation, then the call: both taken and answered.
    assert.match(e.message, /requests posted 2, taken 2, answered 2/);
    port1.close();
    assert.deepEqual([...p.call('echo', new Uint8Array([5]))], [5]);
  } finally {
    p.close();
  }
});

test('stress: 2,000 calls of every kind under CPU contention, each with its exact result', { timeout: 600000 }, async () => {
  const summary = await stress({ calls: 2000, burners: 1, adapterEvery: 1000, seed: 7, log: () => {}, watchdog: false });
  assert.deepEqual(summary.wrong, []);
  assert.equal(summary.calls, 2000);
  // The mix reached the kinds that end an instance, not only echoes.
  assert.ok(summary.byKind['host call'].calls > 0 && summary.byKind.trap.calls > 0 && summary.byKind.adapter.calls === 2, JSON.stringify(summary.byKind));
});
