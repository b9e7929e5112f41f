// @ts-check
// The public API as an application uses it, importing index.js only. The
// type check (npm run typecheck) checks this file too, so a change of the
// API's types that would break an application breaks the check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as api from '../src/index.js';
import { loadPlugin, Host, HostFunction, PabiError, KINDS, DESCRIPTIONS, DEFAULT_LIMITS, Canceller, Oversized, escapeText } from '../src/index.js';
import { ioPlugin, hcPlugin, hcInput } from './helpers.js';

test('index.js exports the API and nothing else', () => {
  assert.deepEqual(Object.keys(api).sort(), [
    'ABI_VERSIONS', 'Canceller', 'DEFAULT_LIMITS', 'DESCRIPTIONS', 'HOST_ABI_TEXT', 'Host', 'HostFunction', 'KINDS',
    'Oversized', 'PabiError', 'Plugin', 'checkPlugin', 'escapeText', 'loadPlugin', 'readPluginFile',
  ]);
});

test('the error kinds are one frozen table, each kind its own name, each with its description', () => {
  assert.ok(Object.isFrozen(KINDS));
  assert.ok(Object.isFrozen(DESCRIPTIONS));
  for (const [name, kind] of Object.entries(KINDS)) {
    assert.equal(kind, name);
    assert.equal(typeof DESCRIPTIONS[kind], 'string');
  }
});

test('a plugin\'s internals are not reachable from the API', () => {
  const p = loadPlugin(ioPlugin(), { limits: { timeoutMs: 500 } });
  try {
    assert.deepEqual(Object.keys(p).sort(), ['functions', 'metadata']);
    for (const name of ['limits', 'handlers', 'startWorker', 'exchange']) assert.equal(name in p, false, name);
  } finally {
    p.close();
  }
});

test('loading, calling, a host function, a failure and a cancel, with the API\'s types', async () => {
  /** @type {string[]} */
  const logged = [];
  const plugin = loadPlugin(ioPlugin(), {
    config: new TextEncoder().encode('config'),
    limits: { timeoutMs: DEFAULT_LIMITS.timeoutMs, maxOutput: 1 << 20 },
    onLog: (level, text) => { logged.push(`${level} ${escapeText(text)}`); },
  });
  try {
    /** @type {Uint8Array} */
    const out = plugin.call('echo', 'hi');
    assert.deepEqual([...out], [...new TextEncoder().encode('hi')]);
    assert.ok(plugin.functions.includes('echo'));
    assert.throws(() => plugin.call('echo', new Oversized(2 ** 32)), (e) => e instanceof PabiError && e.kind === KINDS.INPUT_LIMIT);
    const canceller = new Canceller(plugin.canceller.buffer);
    assert.equal(canceller.cancel(), false);
  } finally {
    plugin.close();
    await plugin.closed();
  }

  const host = new Host({ limits: { timeoutMs: 500 } });
  host.define('kv.get', (request, cx) => `${cx.hostCall}:${Buffer.from(request).toString()}`);
  const hc = host.load(hcPlugin(), { hostFunctions: [new HostFunction('kv.init', () => new Uint8Array(0))] });
  try {
    const reply = Buffer.from(hc.call('call', hcInput('kv.get', 'apple'))).subarray(8).toString();
    assert.equal(reply, 'kv.get:apple');
  } finally {
    hc.close();
  }
});
