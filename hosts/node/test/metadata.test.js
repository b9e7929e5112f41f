// META-2: metadata is I-JSON, nests at most 64 levels, and schema lengths
// count code points.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkMetadata, readEnvelope } from '../../shared/check.js';
import { PabiError } from '../src/index.js';

const BASE = '"abi":"1.0","name":"m","version":"1.0.0","profile":"wasi","functions":[{"name":"f"}]';
const doc = (extra = '', caps = '[]') => Buffer.from(`{${BASE},"capabilities":${caps}${extra}}`);
const refusal = (payload) => {
  try {
    checkMetadata(payload);
  } catch (e) {
    if (e instanceof PabiError) return e;
    throw e;
  }
  return null;
};
const refusedMeta2 = (payload) => {
  const e = refusal(payload);
  assert.ok(e, 'the metadata was accepted');
  assert.equal(e.kind, 'INVALID_MODULE');
  assert.equal(e.clause, 'META-2', e.message);
};
const nested = (levels) => `,"x-deep":${'['.repeat(levels)}${']'.repeat(levels)}`;

test('nesting: 64 levels are accepted, 65 refused, 30,000 refused without a stack overflow (META-2)', () => {
  assert.equal(refusal(doc(nested(63))), null);
  refusedMeta2(doc(nested(64)));
  refusedMeta2(doc(nested(30000)));
  // Brackets inside strings do not nest.
  assert.equal(refusal(doc(`,"description":"${'['.repeat(100)}"`)), null);
});

test('a lone surrogate, escaped or raw, is refused; a pair is accepted (META-2)', () => {
  refusedMeta2(doc(',"description":"a\\ud800b"'));
  refusedMeta2(doc(',"description":"\\udc00"'));
  refusedMeta2(doc(',"x-\\ud800":1'));
  refusedMeta2(Buffer.concat([doc().subarray(0, -1), Buffer.from(',"description":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]));
  assert.equal(refusal(doc(',"description":"\\ud83d\\ude00 \\\\ud800"')), null);
});

test('a number outside binary64 is refused; a small one is not (META-2)', () => {
  refusedMeta2(doc(',"x-n":1e400'));
  refusedMeta2(doc(',"x-n":-1E+309'));
  assert.equal(refusal(doc(',"x-n":1.5e300')), null);
  assert.equal(refusal(doc(',"x-n":"1e400"')), null);
});

test('a member name twice in one object is refused, at any depth; the same name in two objects is not (META-2)', () => {
  refusedMeta2(doc(',"description":"a","description":"b"'));
  refusedMeta2(doc(',"x-v":{"k":1,"k":2}'));
  refusedMeta2(doc(',"x-v":[{"a":{"k":1,"k":[]}}]'));
  assert.equal(refusal(doc(',"x-v":{"k":1},"x-w":{"k":1,"v":{"k":2}}')), null);
  // "k" as a value is not a member name.
  assert.equal(refusal(doc(',"x-v":{"k":"k"}')), null);
});

test('a byte-order mark is refused (META-2)', () => {
  refusedMeta2(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), doc()]));
});

test('pattern lengths count code points: an fs: path of 600 astral characters is valid, 1,024 are not (META-2)', () => {
  assert.equal(refusal(doc('', `["fs:/${'\u{1F600}'.repeat(600)}:ro"]`)), null);
  const e = refusal(doc('', `["fs:/${'\u{1F600}'.repeat(1024)}:ro"]`));
  assert.equal(e.clause, 'META-3');
});

test('the envelope applies every rule of META-2, the size cap included, whatever the version (VER-7)', () => {
  const envelope = (payload) => {
    try {
      return readEnvelope(payload);
    } catch (e) {
      if (e instanceof PabiError) return e.clause;
      throw e;
    }
  };
  const pad = (n) => Buffer.from(`{"abi":"2.0","x-pad":"${'a'.repeat(n)}"}`);
  const fits = pad(65536 - pad(0).length);
  assert.equal(fits.length, 65536);
  assert.equal(envelope(fits), '2.0');
  assert.equal(envelope(pad(65537 - pad(0).length)), 'META-2');
  assert.equal(envelope(Buffer.from(`{"abi":"2.0"${nested(64)}}`)), 'META-2');
  assert.equal(envelope(Buffer.from('[{"abi":"1.0"}]')), 'META-2');
  assert.equal(envelope(Buffer.from('{"name":"x"}')), 'VER-1');
  assert.equal(envelope(Buffer.from('{"abi":1.0}')), 'VER-1');
  assert.equal(envelope(Buffer.from('{"abi":"1.700000"}')), 'VER-1');
});
