// The browser adapter's own answers, which need no browser: bad arguments
// exit 2 naming what is wrong, and a driver that does not answer is an
// error (exit 1) at once, never a hang.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { spawnSync, execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ioPlugin } from '../../node/test/helpers.js';

const ADAPTER = fileURLToPath(new URL('../bin/pabi-web.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pabi-web-adapter-'));
const plugin = path.join(dir, 'io.wasm');
fs.writeFileSync(plugin, ioPlugin());

const run = (args) => spawnSync(process.execPath, [ADAPTER, ...args], { encoding: 'utf8', timeout: 30000 });

test('without --driver or with an unknown --browser, the adapter exits 2 saying which', () => {
  const noDriver = run(['--browser', 'chromium', plugin, 'echo', '--format', 'json']);
  assert.equal(noDriver.status, 2);
  assert.match(noDriver.stderr, /^pabi-web: --driver URL is needed/);
  assert.match(noDriver.stderr, /usage: pabi-web --driver URL --browser chromium\|firefox PLUGIN\.wasm/);
  const badBrowser = run(['--driver', 'http://127.0.0.1:9/', '--browser', 'safari', plugin, 'echo', '--format', 'json']);
  assert.equal(badBrowser.status, 2);
  assert.match(badBrowser.stderr, /--browser chromium or --browser firefox is needed/);
  // The shared arguments are read as Node's adapter reads them.
  const badHex = run(['--driver', 'http://127.0.0.1:9/', '--browser', 'chromium', plugin, 'echo', '--input-hex', 'zz', '--format', 'json']);
  assert.equal(badHex.status, 2);
  assert.match(badHex.stderr, /--input-hex: not hex/);
});

test('a driver that refuses the case, or is not there, makes the adapter exit 1 with the reason', async () => {
  const gone = run(['--driver', 'http://127.0.0.1:9/', '--browser', 'chromium', plugin, 'echo', '--format', 'json']);
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /the driver at http:\/\/127\.0\.0\.1:9\/ did not answer/);
  assert.equal(gone.stdout, '');
  // A server that answers 404, as the driver does for a browser it lacks.
  const server = http.createServer((req, res) => res.writeHead(404).end('no such browser\n'));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${server.address().port}/`;
    // Asynchronously, so that this process's server can answer.
    const refused = await new Promise((resolve) => {
      execFile(process.execPath, [ADAPTER, '--driver', url, '--browser', 'firefox', plugin, 'echo', '--format', 'json'], { timeout: 30000 }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /answered HTTP 404: no such browser/);
  } finally {
    server.close();
  }
});
