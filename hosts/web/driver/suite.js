// The host conformance suite and the shared vectors against the browser
// host, in each browser: starts the driver (driver.js) once, then runs
// `pabi host-test` with the browser adapter (../bin/pabi-web.js) pointed at
// it, for Chromium and Firefox at once. Exits 1 when any run failed, 2 when
// the driver could not start (a browser missing among the reasons).
//
//   node hosts/web/driver/suite.js [--browsers chromium,firefox] [--serial] [-- HOST-TEST ARGS...]
//
// Run from the repository root, after ci/build-plugins; the arguments
// after `--` replace the default `--vectors fixtures/vectors --plugins
// target/plugins`.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const ROOT = path.resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const DRIVER = fileURLToPath(new URL('./driver.js', import.meta.url));
const ADAPTER = path.relative(ROOT, fileURLToPath(new URL('../bin/pabi-web.js', import.meta.url)));
// How long the browsers may take to start and open their pages.
const START_MS = 120000;

const args = process.argv.slice(2);
const dashes = args.indexOf('--');
const own = dashes >= 0 ? args.slice(0, dashes) : args;
const hostTestArgs = dashes >= 0 ? args.slice(dashes + 1) : ['--vectors', 'fixtures/vectors', '--plugins', 'target/plugins'];
const at = own.indexOf('--browsers');
const browsers = at >= 0 ? own[at + 1].split(',') : ['chromium', 'firefox'];

// The driver's standard input is a pipe from this process: when this
// process ends, however it ends, the pipe closes and the driver ends.
const driver = spawn(process.execPath, [DRIVER, '--browsers', browsers.join(',')], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
const url = await new Promise((resolve) => {
  const timer = setTimeout(() => resolve(null), START_MS);
  const lines = createInterface({ input: driver.stdout });
  lines.on('line', (line) => {
    if (line.startsWith('driver ')) {
      clearTimeout(timer);
      resolve(line.slice('driver '.length));
    }
  });
  driver.on('exit', () => { clearTimeout(timer); resolve(null); });
});
if (!url) {
  process.stderr.write(`error: the browser driver did not start within ${START_MS / 1000} s or ended (see above)\n`);
  driver.kill('SIGTERM');
  process.exit(2);
}

// The browsers run their suites at the same time, each in its own page of
// the one driver: a case is mostly waiting (an adapter process starting,
// a message crossing to a worker), so two take little more wall time than
// one. Each run's output is printed whole when it ends, so that the two
// do not interleave; `--serial` runs them one after the other.
const serial = own.includes('--serial');
function hostTest(browser) {
  const started = Date.now();
  return new Promise((resolve) => {
    const run = spawn('target/debug/pabi', ['host-test', '--adapter', `node ${ADAPTER} --driver ${url} --browser ${browser}`, ...hostTestArgs], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks = [];
    run.stdout.on('data', (d) => chunks.push(d));
    run.stderr.on('data', (d) => chunks.push(d));
    const done = (code) => {
      process.stdout.write(`\n==> browser host in ${browser} (hosts/web)\n${Buffer.concat(chunks).toString()}`);
      process.stdout.write(`${browser}: pabi host-test exited ${code} after ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      resolve(code);
    };
    run.on('close', (c, signal) => done(c ?? (signal ? 128 : 1)));
    run.on('error', (e) => { chunks.push(Buffer.from(`error: cannot run target/debug/pabi: ${e.message}\n`)); });
  });
}
const codes = [];
if (serial) {
  for (const browser of browsers) codes.push(await hostTest(browser));
} else {
  codes.push(...(await Promise.all(browsers.map(hostTest))));
}
const failed = codes.filter((c) => c !== 0).length;
driver.stdin.end();
await new Promise((resolve) => (driver.exitCode !== null ? resolve() : driver.on('exit', resolve)));
process.exit(failed ? 1 : 0);
