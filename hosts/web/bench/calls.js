// Per-call time of the browser host, in each installed browser, measured
// as hosts/node/bench/calls.js measures the Node host: the echo plugin
// through loadPlugin and plugin.call, against raw WebAssembly in the page
// and a bare round trip to a Web Worker, at 0 B, 64 B, 1 KiB and 64 KiB of
// input, in interleaved batches; each figure is the median over the rounds
// of a batch's time per call. The browsers run headless (../driver/).
//
//   node hosts/web/bench/calls.js [--browsers chromium,firefox] [--rounds N] [--ms M]

import { serve } from '../driver/server.js';
import { launch, BROWSERS } from '../driver/browsers.js';
import { echoPlugin } from '../../node/bench/echo-plugin.js';
import { u32, s32, str, vec, section } from '../../node/test/helpers.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : args[at + 1];
};
const ROUNDS = Number(option('--rounds', 15));
const BATCH_MS = Number(option('--ms', 40));
const browsers = option('--browsers', BROWSERS.join(',')).split(',');
const SIZES = [0, 64, 1024, 65536];

// The raw echo of hosts/node/bench/calls.js: memory.copy from IN to OUT.
function rawModule() {
  const body = (code) => [...u32(code.length + 2), 0, ...code, 0x0b];
  const i32 = (v) => [0x41, ...s32(v)];
  const code = [...i32(1024 + 65536), ...i32(1024), 0x20, 0, 0xfc, 10, 0, 0, ...i32(0)];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, 1, 0x7f, 1, 0x7f]])),
    ...section(3, vec([[0]])),
    ...section(5, vec([[0x00, 3]])),
    ...section(7, vec([[...str('memory'), 0x02, 0], [...str('echo'), 0x00, 0]])),
    ...section(10, vec([body(code)])),
  ]);
}

const us = (ns) => (ns >= 100000 ? `${(ns / 1000).toFixed(0)} µs` : `${(ns / 1000).toFixed(ns < 10000 ? 2 : 1)} µs`);
const ratio = (x) => `${x >= 10 ? x.toFixed(0) : x.toFixed(2)}×`;
const label = (size) => (size >= 1024 ? `${size / 1024} KiB` : `${size} B`);

const { server, url } = await serve();
try {
  const b64 = (bytes) => Buffer.from(bytes).toString('base64');
  const o = { plugin: b64(echoPlugin()), raw: b64(rawModule()), rounds: ROUNDS, batchMs: BATCH_MS, sizes: SIZES };
  for (const name of browsers) {
    const browser = await launch(/** @type {any} */ (name));
    try {
      const page = await browser.open(`${url}hosts/web/page/`);
      await page.waitFor(() => window.pabiReady === true, 30000);
      const rows = await page.evaluate(async (x) => {
        const { bench } = await import('/hosts/web/bench/calls-page.js');
        const bytes = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
        return bench({ ...x, plugin: bytes(x.plugin), raw: bytes(x.raw) });
      }, o);
      console.log(`\n${browser.version}, ${ROUNDS} rounds of about ${BATCH_MS} ms per variant and size; medians per call\n`);
      console.log('| input | raw wasm | raw wasm in a worker | pabi-web | pabi-web / raw | pabi-web / worker |');
      console.log('|---|---|---|---|---|---|');
      for (const r of rows) console.log(`| ${label(r.size)} | ${us(r.raw)} | ${us(r.worker)} | ${us(r.pabi)} | ${ratio(r.pabi / r.raw)} | ${ratio(r.pabi / r.worker)} |`);
    } finally {
      await browser.close();
    }
  }
} finally {
  server.close();
}
