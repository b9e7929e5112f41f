import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ioPlugin } from './helpers.js';

const ADAPTER = fileURLToPath(new URL('../bin/pabi-node.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pabi-node-'));
const plugin = path.join(dir, 'io.wasm');
fs.writeFileSync(plugin, ioPlugin());

function run(...args) {
  const r = spawnSync(process.execPath, [ADAPTER, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { status: r.status, lines: r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)), stderr: r.stderr };
}

test('the adapter prints one JSON line per call and exits 0', () => {
  const r = run(plugin, 'echo', '--input-hex', '6869', '--then', 'fail:', '--then', 'status:05000000', '--then', 'wrap:', '--then', 'count:', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.lines[0], { ok: true, output_hex: '6869' });
  assert.deepEqual(r.lines[1], { ok: false, kind: 'PLUGIN_ERROR', status: 1, message: 'bad input' });
  assert.equal(r.lines[2].kind, 'UNKNOWN_STATUS');
  assert.equal(r.lines[2].status, 5);
  assert.equal(r.lines[3].kind, 'ABI_VIOLATION');
  assert.equal(r.lines[3].clause, 'MEM-3');
  assert.deepEqual(r.lines[4], { ok: true, output_hex: '01000000' });
  assert.equal(r.lines.length, 5);
});

test('the adapter answers NOT_SUPPORTED for a fuel budget', () => {
  const r = run(plugin, 'count', '--input-hex', '', '--fuel', '100', '--format', 'json');
  assert.equal(r.status, 0);
  assert.deepEqual(r.lines, [{ ok: false, kind: 'NOT_SUPPORTED', message: r.lines[0].message, clause: 'LIM-4' }]);
});

test('the adapter enforces --max-output and --timeout-ms', () => {
  const r = run(plugin, 'flood', '--input-hex', '', '--then', 'spin:', '--max-output', '1000', '--timeout-ms', '50', '--format', 'json');
  assert.equal(r.status, 0);
  assert.equal(r.lines[0].kind, 'OUTPUT_LIMIT');
  assert.equal(r.lines[1].kind, 'TIMEOUT');
});

test('the adapter exits 2 on bad arguments', () => {
  assert.equal(run(plugin).status, 2);
  assert.equal(run(plugin, 'echo', '--input-hex', 'zz', '--format', 'json').status, 2);
});

test('@save on a plugin without the state pair is UNKNOWN_FUNCTION', () => {
  const r = run(plugin, '@save', '--input-hex', '', '--format', 'json');
  assert.equal(r.lines[0].kind, 'UNKNOWN_FUNCTION');
});

test('large inputs and configurations come from files: --input, --config, --then F:@FILE', () => {
  const big = Buffer.alloc(70000, 0x61);
  const file = path.join(dir, 'input.bin');
  fs.writeFileSync(file, big);
  const roomy = path.join(dir, 'roomy.wasm');
  fs.writeFileSync(roomy, ioPlugin({ memoryPages: 3 }));
  const r = run(roomy, 'echo', '--input', file, '--then', `echo:@${file}`, '--config', file, '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 2);
  for (const line of r.lines) assert.deepEqual(line, { ok: true, output_hex: big.toString('hex') });
});
