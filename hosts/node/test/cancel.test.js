// Cancelling a running call (src/cancel.js): from another thread, which is
// how a synchronous call is cancelled, and from a host-call handler of the
// call itself. A cancelled call ends with CANCELLED, its instance is
// replaced, and a cancel does not count toward the crash loop (LIFE-7).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { loadPlugin, Canceller } from '../src/index.js';
import { ioPlugin, hcPlugin, hcInput, failure } from './helpers.js';


const count = (p) => Buffer.from(p.call('count')).readUInt32LE(0);

// A thread that cancels whatever call of the plugin runs, again and again,
// until it is terminated: it waits for each call to start by polling,
// never for a fixed time.
async function canceller(plugin) {
  const thread = new Worker(`
    const { workerData } = require('node:worker_threads');
    const pause = new Int32Array(new SharedArrayBuffer(4));
    import(workerData.url).then(({ Canceller }) => {
      const canceller = new Canceller(workerData.buffer);
      for (;;) {
        canceller.cancel();
        Atomics.wait(pause, 0, 0, 1);
      }
    });
  `, { eval: true, workerData: { url: new URL('../../shared/cancel.js', import.meta.url).href, buffer: plugin.canceller.buffer } });
  await new Promise((resolve) => thread.once('online', resolve));
  return thread;
}

test('another thread cancels a running call: CANCELLED, and the next call runs on a fresh instance', { timeout: 30000 }, async () => {
  // The deadline is far away: only the cancel can end the call in time.
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 60000 } });
  try {
    assert.equal(count(p), 1);
    assert.equal(count(p), 2);
    const thread = await canceller(p);
    let e;
    try {
      e = failure(() => p.call('spin'));
    } finally {
      await thread.terminate();
    }
    assert.equal(e.kind, 'CANCELLED');
    assert.match(e.message, /^the call was cancelled by the host's caller: pabi_fn_spin was stopped$/);
    assert.equal(count(p), 1);
  } finally {
    p.close();
  }
});

test('cancels do not count toward the crash loop (LIFE-7)', { timeout: 60000 }, async () => {
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 60000 }, crashLoop: { max: 2, windowMs: 60000 } });
  try {
    const thread = await canceller(p);
    try {
      // More cancels in a row than the crash loop allows failures; each
      // call reloads the instance the cancel before it discarded.
      for (let i = 0; i < 4; i++) assert.equal(failure(() => p.call('spin')).kind, 'CANCELLED');
    } finally {
      await thread.terminate();
    }
    assert.equal(count(p), 1);
  } finally {
    p.close();
  }
});

test('a host-call handler cancels its own call: the plugin never reads the reply, and its instance is replaced', () => {
  let p = null;
  let cancelled = null;
  p = loadPlugin(hcPlugin(), {
    hostFunctions: [{ name: 'kv.get', handler: () => { cancelled = p.cancel(); return new Uint8Array([1, 2, 3]); } }],
  });
  try {
    assert.equal(count(p), 1);
    const e = failure(() => p.call('call', hcInput('kv.get', 'apple')));
    assert.equal(cancelled, true);
    assert.equal(e.kind, 'CANCELLED');
    assert.match(e.message, /pabi_fn_call was stopped/);
    assert.equal(count(p), 1);
  } finally {
    p.close();
  }
});

test('a cancel when no call runs does nothing, to this call or the next', () => {
  const p = loadPlugin(ioPlugin());
  try {
    assert.equal(count(p), 1);
    assert.equal(p.cancel(), false);
    assert.equal(new Canceller(p.canceller.buffer).cancel(), false);
    assert.equal(count(p), 2);
  } finally {
    p.close();
  }
});
