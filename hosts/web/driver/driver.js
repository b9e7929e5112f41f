// The long-lived process of the browser tests: the static server (with the
// COOP and COEP headers), one headless browser of each kind kept running
// with the test page open, and a small HTTP endpoint through which the
// browser adapter (../bin/pabi-web.js) hands a case to a page, so that a
// case does not pay for a browser's start.
//
//   node hosts/web/driver/driver.js [--browsers chromium,firefox]
//
// prints one line `driver http://127.0.0.1:PORT/` when every browser has
// its page ready (the adapter's `--driver`), then serves until its standard
// input closes or it is sent SIGTERM. Started with a pipe as standard input
// (suite.js does), it ends with the process that started it, however that
// one ends. POST /case?browser=NAME with a case
// (bin/pabi-web.js) answers { lines, log } or { internal }; a case that has
// not ended within CASE_MS is an error, and the page is loaded again so
// that the next case starts clean.

import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { serve } from './server.js';
import { launch, BROWSERS } from './browsers.js';

// Below the conformance runner's 60 s bound for a whole adapter run.
const CASE_MS = 50000;

/**
 * Starts the server and the browsers; resolves with { url, pages, close },
 * pages mapping each browser's name to { browser, page, run(fn, arg) }.
 * @param {string[]} names
 */
export async function startBrowsers(names) {
  const { server, url } = await serve();
  const pages = new Map();
  const close = async () => {
    for (const { browser } of pages.values()) await browser.close().catch(() => {});
    server.close();
  };
  try {
    for (const name of names) {
      if (!BROWSERS.includes(name)) throw new Error(`unknown browser ${name}; known: ${BROWSERS.join(', ')}`);
      const browser = await launch(/** @type {any} */ (name));
      const pageUrl = `${url}hosts/web/page/`;
      const entry = { browser, page: null, pageUrl };
      entry.page = await openReady(browser, pageUrl);
      pages.set(name, entry);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { url, pages, close };
}

// Opens the test page and waits for its module to be ready (an event, not
// a sleep: the page sets window.pabiReady).
async function openReady(browser, pageUrl) {
  const page = await browser.open(pageUrl);
  await page.waitFor(() => window.pabiReady === true, 30000);
  return page;
}

/**
 * Runs one case in the page of `entry`, bounded by CASE_MS.
 * @param {{ browser: any, page: any, pageUrl: string }} entry
 * @param {any} c
 */
export async function runInPage(entry, c) {
  let timer;
  const bound = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the case did not end within ${CASE_MS} ms in the page`)), CASE_MS);
  });
  try {
    return await Promise.race([entry.page.evaluate((x) => window.pabiCase(x), c), bound]);
  } catch (e) {
    // The page may be stuck: a fresh one for the next case.
    await entry.page.close().catch(() => {});
    entry.page = await openReady(entry.browser, entry.pageUrl);
    return { lines: [], log: [], internal: String(e && e.message) };
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  const args = process.argv.slice(2);
  const at = args.indexOf('--browsers');
  const names = at >= 0 ? args[at + 1].split(',') : BROWSERS;
  const { pages, close } = await startBrowsers(names);
  // One case at a time per browser: the runner runs them in turn anyway.
  const queues = new Map(names.map((n) => [n, Promise.resolve()]));
  const control = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const entry = pages.get(u.searchParams.get('browser') ?? '');
    if (req.method !== 'POST' || u.pathname !== '/case' || !entry) {
      res.writeHead(404).end('POST /case?browser=NAME\n');
      return;
    }
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const name = u.searchParams.get('browser');
      const turn = queues.get(name).then(async () => {
        let answer;
        try {
          answer = await runInPage(entry, JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          answer = { lines: [], log: [], internal: String(e && e.stack) };
        }
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
      });
      queues.set(name, turn);
    });
  });
  await new Promise((resolve) => control.listen(0, '127.0.0.1', resolve));
  const stop = async () => {
    control.close();
    await close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
  for (const [name, { browser }] of pages) process.stderr.write(`${name}: ${browser.version}\n`);
  process.stdout.write(`driver http://127.0.0.1:${control.address().port}/\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`driver: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  });
}
