// ABI 1.1 host calls through the embedder API: host_call and reply_read
// (CALL-3 … CALL-8), the host_calls metadata (CALL-1, CALL-2, VER-9), the
// caps (LIM-14), the phases (HOST-8) and a host offering 1.0 only (CALL-9).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPlugin, op as g, hcPlugin, hcInput as req } from './helpers.js';
import { loadPlugin, Host, HostFunction, PabiError, checkPlugin } from '../src/index.js';
import { failureReply, runHandler, FAILURE_CAP } from '../../shared/host.js';

// What `call` and `seq` output: the code, the count read, the bytes read.
function answer(output) {
  const b = Buffer.from(output);
  return { code: b.readInt32LE(0), read: b.readInt32LE(4), reply: b.subarray(8) };
}

function refusal(fn) {
  try {
    fn();
  } catch (e) {
    if (e instanceof PabiError) return e;
    throw e;
  }
  assert.fail('no PabiError was thrown');
}

const bytesOf = (text) => new TextEncoder().encode(text);

test('a handler gets the request and the context; its reply is read at any offset (CALL-4, CALL-6)', () => {
  const seen = [];
  const p = loadPlugin(hcPlugin(), {
    hostFunctions: [{ name: 'kv.get', handler: (request, cx) => { seen.push([Buffer.from(request).toString(), { ...cx }]); return bytesOf('red'); } }],
  });
  try {
    assert.deepEqual(answer(p.call('call', req('kv.get', 'apple'))), { code: 3, read: 3, reply: Buffer.from('red') });
    assert.deepEqual(answer(p.call('call', req('kv.get', 'apple', { offset: 1, len: 1 }))), { code: 3, read: 1, reply: Buffer.from('e') });
    assert.deepEqual(answer(p.call('call', req('kv.get', 'apple', { offset: 3 }))), { code: 3, read: 0, reply: Buffer.alloc(0) });
    assert.deepEqual(seen[0], ['apple', { plugin: 'hc', function: 'call', hostCall: 'kv.get' }]);
    assert.equal(seen.length, 3);
  } finally {
    p.close();
  }
});

test('a handler may answer with any byte view, an ArrayBuffer or a string (UTF-8) (CALL-4)', () => {
  const replies = [new Uint16Array([0x0201]), new Uint8Array([9, 8, 7, 6]).subarray(1, 3), new Uint8Array([5]).buffer, 'é', new Uint8Array(0)];
  let i = 0;
  const p = loadPlugin(hcPlugin(), { hostFunctions: [{ name: 'kv.get', handler: () => replies[i++] }] });
  try {
    const got = replies.map(() => answer(p.call('call', req('kv.get'))));
    assert.deepEqual(got.map((a) => [a.code, [...a.reply]]), [[2, [1, 2]], [2, [8, 7]], [1, [5]], [2, [0xc3, 0xa9]], [0, []]]);
  } finally {
    p.close();
  }
});

test('a handler that throws is E_FAILED with its message as the reply, and the call goes on (CALL-4, ERR-5)', () => {
  const p = loadPlugin(hcPlugin(), {
    hostFunctions: [
      { name: 'kv.get', handler: () => { throw new Error('no such key'); } },
      { name: 'kv.big', handler: () => { throw 'a string'; } }, // eslint-disable-line no-throw-literal
    ],
  });
  try {
    assert.deepEqual(answer(p.call('call', req('kv.get', 'kiwi'))), { code: -4, read: 11, reply: Buffer.from('no such key') });
    assert.deepEqual(answer(p.call('call', req('kv.big'))), { code: -4, read: 8, reply: Buffer.from('a string') });
  } finally {
    p.close();
  }
});

test('a failure message is cut to 65,536 bytes at a character boundary (CALL-4)', () => {
  // 'a' then two-byte characters: byte 65,536 is the second byte of one.
  const long = `a${'é'.repeat(40000)}`;
  const cut = failureReply(long);
  assert.equal(cut.length, FAILURE_CAP - 1);
  assert.equal(new TextDecoder('utf-8', { fatal: true }).decode(cut), long.slice(0, 32768));
  // A four-byte character across the cap is left out whole.
  const astral = failureReply(`${'a'.repeat(FAILURE_CAP - 2)}\u{1F600}`);
  assert.equal(astral.length, FAILURE_CAP - 2);
  assert.equal(failureReply('x'.repeat(FAILURE_CAP)).length, FAILURE_CAP);
  // And so the plugin reads it.
  const p = loadPlugin(hcPlugin(), { hostFunctions: [{ name: 'kv.get', handler: () => { throw new Error(long); } }] });
  try {
    const a = answer(p.call('call', req('kv.get', '', { len: 70000 })));
    assert.equal(a.code, -4);
    assert.equal(a.read, FAILURE_CAP - 1);
    assert.deepEqual(new Uint8Array(a.reply), cut);
  } finally {
    p.close();
  }
});

test('a handler answering with a Promise or with something that is not bytes is a handler failure (CALL-4)', () => {
  const cx = { plugin: 'p', function: 'f', hostCall: 'kv.get' };
  const promised = runHandler(async () => new Uint8Array(1), new Uint8Array(0), cx, 100);
  assert.equal(promised.code, -4);
  assert.match(new TextDecoder().decode(promised.reply), /Promise/);
  // A rejected Promise is not left unhandled (the test runner would fail on it).
  assert.equal(runHandler(() => Promise.reject(new Error('late')), new Uint8Array(0), cx, 100).code, -4);
  for (const value of [7, undefined, null, { length: 1 }, [1, 2]]) {
    const r = runHandler(() => value, new Uint8Array(0), cx, 100);
    assert.equal(r.code, -4, String(value));
    assert.match(new TextDecoder().decode(r.reply), /kv\.get/);
  }
});

test('an optional host call the host does not offer is E_ABSENT and runs nothing; the reply is emptied (CALL-5, CALL-6)', () => {
  const p = loadPlugin(hcPlugin(), { hostFunctions: [{ name: 'kv.get', handler: () => bytesOf('red') }] });
  try {
    // `seq` reads after a first call to kv.get that left "red".
    assert.deepEqual(answer(p.call('seq', req('kv.big'))), { code: -5, read: 0, reply: Buffer.alloc(0) });
    // E_FAILED replaces it too, with the message.
    assert.deepEqual(answer(p.call('seq', req('kv.get'))), { code: 3, read: 3, reply: Buffer.from('red') });
  } finally {
    p.close();
  }
});

test('per-plugin allow lists: a function offered only to other plugins is not offered (CALL-5)', () => {
  const handler = () => bytesOf('red');
  const others = loadPlugin(hcPlugin(), { hostFunctions: [new HostFunction('kv.get', handler, { onlyFor: ['other'] })] });
  const mine = loadPlugin(hcPlugin(), { hostFunctions: [new HostFunction('kv.get', handler, { onlyFor: ['other', 'hc'] })] });
  try {
    assert.equal(answer(others.call('call', req('kv.get'))).code, -5);
    assert.equal(answer(mine.call('call', req('kv.get'))).code, 3);
  } finally {
    others.close();
    mine.close();
  }
});

test('a required host call not offered is MISSING_CAPABILITY naming host_call:NAME, with every missing capability (CALL-5, WASI-5)', () => {
  const hostCalls = [{ name: 'kv.get', required: true }, { name: 'kv.put', required: true }, { name: 'kv.init', required: false }];
  let e = refusal(() => loadPlugin(hcPlugin({ hostCalls }), { hostFunctions: [{ name: 'kv.get', handler: () => 'x', onlyFor: ['other'] }] }));
  assert.equal(e.kind, 'MISSING_CAPABILITY');
  assert.match(e.message, /host_call:kv\.get/);
  assert.match(e.message, /host_call:kv\.put/);
  assert.doesNotMatch(e.message, /kv\.init/);
  e = refusal(() => loadPlugin(hcPlugin({ hostCalls, profile: 'wasi', capabilities: ['clock'] }), { hostFunctions: [{ name: 'kv.get', handler: () => 'x' }] }));
  assert.equal(e.kind, 'MISSING_CAPABILITY');
  assert.match(e.message, /"clock"/);
  assert.match(e.message, /host_call:kv\.put/);
  assert.doesNotMatch(e.message, /host_call:kv\.get/);
  const p = loadPlugin(hcPlugin({ hostCalls }), { hostFunctions: [{ name: 'kv.get', handler: () => 'x' }, { name: 'kv.put', handler: () => 'y' }] });
  p.close();
});

test('a name the plugin does not declare, or not UTF-8, aborts the call with ABI_VIOLATION citing CALL-3 before any handler; the next call runs on a fresh instance', () => {
  let ran = 0;
  const p = loadPlugin(hcPlugin(), { hostFunctions: [{ name: 'kv.get', handler: () => { ran++; return 'x'; } }, { name: 'kv.put', handler: () => { ran++; return 'x'; } }] });
  try {
    assert.equal(p.call('count').at(0), 1);
    for (const name of ['kv.put', 'kv.ge', Buffer.from([0x6b, 0x76, 0x2e, 0xff]), 'kv.\u001b[2J\u009b\u2028']) {
      const e = refusal(() => p.call('call', req(name)));
      assert.equal(e.kind, 'ABI_VIOLATION');
      assert.equal(e.clause, 'CALL-3');
      // SEC-3: the plugin's name reaches the message with its control characters escaped.
      assert.doesNotMatch(e.message, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
      // The instance died: the count starts again.
      assert.equal(p.call('count').at(0), 1);
    }
    assert.equal(ran, 0);
  } finally {
    p.close();
  }
});

test('the request and reply caps: E_LIMIT, the handler not run for a long request, the reply dropped for a long reply (LIM-14, CALL-6)', () => {
  const requests = [];
  const p = loadPlugin(hcPlugin(), {
    limits: { maxRequest: 4, maxReply: 4 },
    hostFunctions: [
      { name: 'kv.get', handler: (r) => { requests.push(Buffer.from(r).toString()); return bytesOf('red'); } },
      { name: 'kv.big', handler: (r) => { requests.push(Buffer.from(r).toString()); return bytesOf('12345'); } },
    ],
  });
  try {
    assert.deepEqual(answer(p.call('seq', req('kv.get', 'apple'))), { code: -1, read: 0, reply: Buffer.alloc(0) });
    assert.deepEqual(answer(p.call('call', req('kv.get', 'kiwi'))), { code: 3, read: 3, reply: Buffer.from('red') });
    assert.deepEqual(answer(p.call('seq', req('kv.big'))), { code: -1, read: 0, reply: Buffer.alloc(0) });
    // `seq`'s own first call asks for "apple", five bytes: refused too.
    assert.deepEqual(requests, ['kiwi', '']);
  } finally {
    p.close();
  }
  // The defaults are 1 MiB each.
  const big = loadPlugin(hcPlugin({ pages: 40 }), { hostFunctions: [{ name: 'kv.get', handler: (r) => new Uint8Array(r.length === 1048576 ? 1048576 : 1048577) }] });
  try {
    assert.equal(answer(big.call('call', req('kv.get', Buffer.alloc(1048576), { len: 0 }))).code, 1048576);
    assert.equal(answer(big.call('call', req('kv.get', Buffer.alloc(1048577), { len: 0 }))).code, -1);
    assert.equal(answer(big.call('call', req('kv.get', Buffer.alloc(3), { len: 0 }))).code, -1);
  } finally {
    big.close();
  }
});

test('host calls run in pabi_init and pabi_fn_* only; elsewhere E_UNAVAILABLE without a handler (HOST-8)', () => {
  const contexts = [];
  const p = loadPlugin(hcPlugin(), { hostFunctions: [{ name: 'kv.init', handler: (r, cx) => { contexts.push(cx.function); return bytesOf('ok'); } }] });
  try {
    const codes = Buffer.from(p.call('initcode'));
    assert.deepEqual([codes.readInt32LE(0), codes.readInt32LE(4)], [-3, 2]);
    assert.equal(Buffer.from(p.saveState()).readInt32LE(0), -3);
    assert.deepEqual(contexts, ['pabi_init']);
  } finally {
    p.close();
  }
});

test('a handler\'s time counts against the deadline: past it the call is TIMEOUT, and the next call runs on a fresh instance (CALL-7, LIM-3)', () => {
  let calls = 0;
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const p = loadPlugin(hcPlugin(), {
    limits: { timeoutMs: 100 },
    hostFunctions: [{ name: 'kv.get', handler: (r) => { calls++; if (r.length) sleep(250); return bytesOf('red'); } }],
  });
  try {
    assert.equal(p.call('count').at(0), 1);
    const e = refusal(() => p.call('call', req('kv.get', 'slow')));
    assert.equal(e.kind, 'TIMEOUT');
    assert.match(e.message, /CALL-7/);
    assert.equal(calls, 1);
    assert.equal(p.call('count').at(0), 1);
    assert.equal(answer(p.call('call', req('kv.get'))).code, 3);
  } finally {
    p.close();
  }
});

test('a handler calling into the instance it serves is refused with HOST_FAILURE, running no plugin code; other instances may be called (CALL-8, HOST-10)', () => {
  const bytes = hcPlugin();
  const other = loadPlugin(bytes);
  let p;
  let mode = 'catch';
  p = loadPlugin(bytes, {
    hostFunctions: [{
      name: 'kv.get',
      handler: () => {
        if (mode === 'other') return other.call('count');
        if (mode === 'throw') return p.call('count');
        const refused = [];
        for (const reenter of [() => p.call('count'), () => p.saveState(), () => p.loadState(new Uint8Array(0)), () => p.close(), () => p.load()]) {
          try {
            reenter();
            refused.push('ran');
          } catch (e) {
            refused.push(`${e.kind} ${e.clause}`);
          }
        }
        return refused.join(',');
      },
    }],
  });
  try {
    assert.equal(p.call('count').at(0), 1);
    const caught = answer(p.call('call', req('kv.get')));
    assert.equal(caught.code, caught.reply.length);
    assert.equal(caught.reply.toString(), Array(5).fill('HOST_FAILURE CALL-8').join(','));
    // Uncaught, the refusal is the handler's failure, which the plugin reads.
    mode = 'throw';
    const thrown = answer(p.call('call', req('kv.get')));
    assert.equal(thrown.code, -4);
    assert.match(thrown.reply.toString(), /CALL-8/);
    // No refused call ran plugin code, and the instance lives on: the
    // counter goes on from 1.
    assert.equal(p.call('count').at(0), 2);
    // Another instance of the same plugin is not the one waiting.
    mode = 'other';
    assert.deepEqual([...answer(p.call('call', req('kv.get'))).reply], [1, 0, 0, 0]);
  } finally {
    p.close();
    other.close();
  }
});

test('a Host holds settings and host functions for the plugins it loads; the last definition of a name wins (CALL-5)', () => {
  const host = new Host({ limits: { maxReply: 2 } });
  host.define('kv.get', () => bytesOf('first')).define('kv.get', () => bytesOf('ok'));
  host.define('kv.big', () => bytesOf('for another'), { onlyFor: ['another'] });
  const p = host.load(hcPlugin(), { limits: { timeoutMs: 500 } });
  try {
    assert.deepEqual(answer(p.call('call', req('kv.get'))), { code: 2, read: 2, reply: Buffer.from('ok') });
    assert.equal(answer(p.call('call', req('kv.big'))).code, -5);
  } finally {
    p.close();
  }
  // Both sets of limits hold: the host's reply cap, and the load's deadline.
  const limited = host.load(hcPlugin(), {
    limits: { timeoutMs: 500 },
    hostFunctions: [{ name: 'kv.big', handler: () => bytesOf('big') }, { name: 'kv.slow', handler: () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600); return bytesOf('late'); } }],
  });
  try {
    assert.equal(answer(limited.call('call', req('kv.big'))).code, -1);
    assert.throws(() => limited.call('call', req('kv.slow')), (e) => e instanceof PabiError && e.kind === 'TIMEOUT'
      && /deadline of 500 ms while the handler of `kv.slow` ran/.test(e.message));
  } finally {
    limited.close();
  }
  assert.throws(() => host.define('pabi.time', () => 'x'), /CALL-2/);
  for (const bad of ['kv', 'Kv.get', 'a.b.c.d.e', 'kv..get', 'kv.get-x', '']) assert.throws(() => new HostFunction(bad, () => 'x'), /CALL-2/, bad);
  assert.throws(() => new HostFunction('kv.get', 'not a function'), TypeError);
});

test('host_calls metadata: unique names (CALL-1), namespace.name outside `pabi` (CALL-2), the schema (META-3)', () => {
  const clause = (hostCalls) => refusal(() => checkPlugin(hcPlugin({ hostCalls }))).clause;
  assert.equal(clause([{ name: 'kv.get', required: true }, { name: 'kv.get', required: false }]), 'CALL-1');
  assert.equal(clause([{ name: 'pabi.time', required: false }]), 'CALL-2');
  assert.equal(clause([{ name: 'get', required: false }]), 'CALL-2');
  assert.equal(clause([{ name: 'a.b.c.d.e', required: false }]), 'CALL-2');
  assert.equal(clause([{ name: 7, required: false }]), 'CALL-2');
  assert.equal(clause([{ name: 'kv.get' }]), 'META-3');
  assert.equal(clause([{ name: 'kv.get', required: 'yes' }]), 'META-3');
  assert.equal(clause([{ name: 'kv.get', required: true, extra: 1 }]), 'META-3');
  assert.equal(clause([{ name: 'kv.get', required: true, reply: 'not a media type' }]), 'META-3');
  assert.equal(clause([{ name: 'get', required: true, summary: 5 }]), 'META-3');
  assert.equal(clause({}), 'META-3');
  assert.equal(clause(Array.from({ length: 257 }, (_, i) => ({ name: `kv.n${i}`, required: false }))), 'META-3');
  const full = [{ name: 'editor.buffer_text', required: true, summary: 's', request: 'text/plain', reply: 'application/json', 'x-note': 1 }, { name: 'a.b.c.d', required: false }];
  const ok = checkPlugin(hcPlugin({ hostCalls: full }), { offers: (name, plugin) => plugin === 'hc' && name !== 'a.b.c.d' });
  assert.deepEqual([...ok.hostCalls], [['editor.buffer_text', true], ['a.b.c.d', false]]);
});

test('a 1.0 plugin may not use the host_calls field (VER-9) or import host_call or reply_read (IMP-4)', () => {
  let e = refusal(() => checkPlugin(hcPlugin({ abi: '1.0' })));
  // The imports come first, as in the validator.
  assert.equal(e.clause, 'IMP-4');
  assert.match(e.message, /pabi\.host_call/);
  const noImports = (metadata) => buildPlugin({ metadata, functions: [{ export: 'pabi_fn_f', code: [g.i32(0)] }] });
  const meta = { abi: '1.0', name: 'v', version: '3.4.5', profile: 'core', functions: [{ name: 'f' }], capabilities: [] };
  e = refusal(() => checkPlugin(noImports({ ...meta, host_calls: [] })));
  assert.equal(e.kind, 'INVALID_MODULE');
  assert.equal(e.clause, 'VER-9');
  assert.match(e.message, /host_calls/);
  checkPlugin(noImports({ ...meta, abi: '1.1', host_calls: [] }));
  checkPlugin(noImports(meta));
  const replyOnly = buildPlugin({ metadata: meta, imports: [{ name: 'reply_read', type: 0 }], functions: [{ export: 'pabi_fn_f', code: [g.i32(0)] }] });
  e = refusal(() => checkPlugin(replyOnly));
  assert.equal(e.clause, 'IMP-4');
  assert.match(e.message, /pabi\.reply_read/);
  // A host offering 1.0 does not provide them at all, but the plugin's
  // own fault, an import newer than it declares, comes first (VER-8).
  e = refusal(() => checkPlugin(replyOnly, { abi: '1.0' }));
  assert.equal(e.clause, 'IMP-4');
  assert.match(e.message, /pabi\.reply_read/);
});

test('a host offering ABI 1.0 only refuses a 1.1 plugin with VERSION_MISMATCH naming both versions, and still runs 1.0 plugins (CALL-9, VER-3, VER-4)', () => {
  const e = refusal(() => loadPlugin(hcPlugin(), { abi: '1.0', hostFunctions: [{ name: 'kv.get', handler: () => 'x' }] }));
  assert.equal(e.kind, 'VERSION_MISMATCH');
  assert.match(e.message, /declares ABI 1\.1/);
  assert.match(e.message, /implements ABI 1\.0/);
  const plain = buildPlugin({ functions: [{ export: 'pabi_fn_f', code: [g.i32(0)] }] });
  const p = loadPlugin(plain, { abi: '1.0' });
  assert.deepEqual([...p.call('f')], []);
  p.close();
  assert.throws(() => loadPlugin(plain, { abi: '1.2' }), RangeError);
});
