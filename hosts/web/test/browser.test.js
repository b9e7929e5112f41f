// The browser host in real browsers, headless: Chromium and Firefox ESR
// (../driver/browsers.js). Each browser gets the demo (a plugin file
// picked, `upper` of `hello` read back as `HELLO`; `enrich` answered by the
// page's host-call table), the isolation check, and the parts of
// the API a page uses differently from Node: calls that wait their turn,
// cancel() from the page, and the limits a browser cannot set. The
// conformance cases and the shared vectors run through the adapter
// (ci/browser-test).
//
//   node --test hosts/web/test/

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { serve, ROOT } from '../driver/server.js';
import { launch, BROWSERS } from '../driver/browsers.js';
import { ioPlugin } from '../../node/test/helpers.js';

const TEXT_PLUGIN = `${ROOT}/target/plugins/rust/text.wasm`;
const IO = Buffer.from(ioPlugin()).toString('base64');

for (const name of BROWSERS) {
  describe(name, () => {
    let browser;
    let isolated;
    let plain;
    before(async () => {
      browser = await launch(name);
      isolated = await serve();
      plain = await serve({ isolation: false });
    });
    after(async () => {
      await browser?.close();
      isolated?.server.close();
      plain?.server.close();
    });

    test('the demo runs text/upper on "hello" and shows HELLO', async () => {
      assert.ok(fs.existsSync(TEXT_PLUGIN), `${TEXT_PLUGIN} is missing: run ci/build-plugins`);
      const page = await browser.open(`${isolated.url}hosts/web/demo/`);
      try {
        await page.waitFor(() => document.getElementById('status').textContent === 'pick a plugin file', 30000);
        await page.setFile('#plugin', TEXT_PLUGIN);
        // The function list is filled once the plugin has loaded.
        await page.waitFor(() => [...document.querySelectorAll('#function option')].some((o) => o.value === 'upper'), 30000);
        await page.evaluate(() => { document.getElementById('function').value = 'upper'; });
        await page.fill('#input', 'hello');
        await page.click('#run');
        await page.waitFor(() => document.getElementById('output').textContent !== '' || document.getElementById('kind').textContent !== '', 30000);
        const shown = await page.evaluate(() => ({ output: document.getElementById('output').textContent, kind: document.getElementById('kind').textContent }));
        assert.deepEqual(shown, { output: 'HELLO', kind: '' });
      } finally {
        await page.close();
      }
    });

    test('the demo\'s host-call table answers enrich\'s host calls, and a plugin error shows its kind', async () => {
      const enrich = `${ROOT}/target/plugins/c/enrich.wasm`;
      assert.ok(fs.existsSync(enrich), `${enrich} is missing: run ci/build-plugins`);
      const page = await browser.open(`${isolated.url}hosts/web/demo/`);
      try {
        await page.waitFor(() => document.getElementById('status').textContent === 'pick a plugin file', 30000);
        // The table first: without kv.get, which enrich requires, it would not load.
        await page.evaluate(() => {
          const table = document.getElementById('table');
          table.value = JSON.stringify({ 'kv.get': [{ request: 'apple', reply: 'red' }] });
        });
        await page.setFile('#plugin', enrich);
        await page.waitFor(() => [...document.querySelectorAll('#function option')].some((o) => o.value === 'enrich'), 30000);
        await page.evaluate(() => { document.getElementById('function').value = 'enrich'; });
        await page.fill('#input', 'apple');
        await page.click('#run');
        await page.waitFor(() => document.getElementById('output').textContent !== '' || document.getElementById('kind').textContent !== '', 30000);
        const first = await page.evaluate(() => document.getElementById('output').textContent);
        assert.equal(first, 'apple\tred\n');
        // A key the table does not know: the handler fails, and enrich
        // reports a plugin error, whose kind the page shows.
        await page.evaluate(() => { document.getElementById('output').textContent = ''; document.getElementById('kind').textContent = ''; });
        await page.fill('#input', 'plum');
        await page.click('#run');
        await page.waitFor(() => document.getElementById('output').textContent !== '' || document.getElementById('kind').textContent !== '', 30000);
        const kind = await page.evaluate(() => document.getElementById('kind').textContent);
        assert.match(kind, /^PLUGIN_ERROR/);
      } finally {
        await page.close();
      }
    });

    test('without the COOP and COEP headers, new Host() and loadPlugin fail at once with HOST_FAILURE naming the headers', async () => {
      const page = await browser.open(`${plain.url}hosts/web/page/`);
      try {
        const got = await page.evaluate(async (b64) => {
          const m = await import('/hosts/web/src/index.js');
          const out = { isolated: globalThis.crossOriginIsolated };
          try { new m.Host(); out.host = 'no error'; } catch (e) { out.host = `${e.kind}: ${e.message}`; }
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          try { await m.loadPlugin(bytes); out.load = 'no error'; } catch (e) { out.load = `${e.kind}: ${e.message}`; }
          return out;
        }, IO);
        assert.equal(got.isolated, false);
        for (const what of [got.host, got.load]) {
          assert.match(what, /^HOST_FAILURE: .*not cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin.*Cross-Origin-Embedder-Policy: require-corp/);
        }
      } finally {
        await page.close();
      }
    });

    test('calls asked for together run one at a time, in order; cancel() ends a running call with CANCELLED and the next call runs on a fresh instance', async () => {
      const page = await browser.open(`${isolated.url}hosts/web/page/`);
      try {
        const got = await page.evaluate(async (b64) => {
          const m = await import('/hosts/web/src/index.js');
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const p = await m.loadPlugin(bytes, { limits: { timeoutMs: 20000 } });
          const u32 = (b) => new DataView(b.buffer, b.byteOffset).getUint32(0, true);
          const counts = (await Promise.all([p.call('count'), p.call('count'), p.call('count')])).map(u32);
          const spinning = p.call('spin');
          // Cancel once the worker has entered the export: the call has
          // started when the plugin's operation is numbered, which
          // cancel() reports as true.
          let cancelled = false;
          while (!(cancelled = p.cancel())) await new Promise((r) => setTimeout(r, 0));
          let kind = 'no error';
          try { await spinning; } catch (e) { kind = e.kind; }
          const after = u32(await p.call('count'));
          await p.close();
          return { counts, cancelled, kind, after };
        }, IO);
        assert.deepEqual(got, { counts: [1, 2, 3], cancelled: true, kind: 'CANCELLED', after: 1 });
      } finally {
        await page.close();
      }
    });

    test('a limit a browser cannot set is refused with NOT_SUPPORTED, not ignored', async () => {
      const page = await browser.open(`${isolated.url}hosts/web/page/`);
      try {
        const got = await page.evaluate(async (b64) => {
          const m = await import('/hosts/web/src/index.js');
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const out = [];
          for (const limits of [{ stackSizeMB: 8 }, { heapMB: 64 }, { fuel: 1000 }]) {
            try { await m.loadPlugin(bytes, { limits }); out.push('loaded'); } catch (e) { out.push(`${e.kind} ${e.clause ?? '-'}`); }
          }
          return out;
        }, IO);
        assert.deepEqual(got, ['NOT_SUPPORTED LIM-7', 'NOT_SUPPORTED -', 'NOT_SUPPORTED LIM-4']);
      } finally {
        await page.close();
      }
    });
  });
}

