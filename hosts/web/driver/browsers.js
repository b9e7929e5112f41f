// Starting the installed browsers, headless, for the tests: Chromium with
// playwright-core, Firefox ESR with puppeteer-core over WebDriver BiDi.
// Neither package may download a browser (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD,
// PUPPETEER_SKIP_DOWNLOAD); both are pointed at Debian's browsers. A
// missing browser is an error, never a skipped test.
//
// Why two drivers: playwright-core's `firefox` launcher speaks Juggler, a
// protocol only Playwright's own patched Firefox builds have, so it cannot
// start a stock Firefox ESR (it waits for a pipe that never answers), and
// its WebDriver BiDi launcher is not part of its public API.
// puppeteer-core drives a stock Firefox over WebDriver BiDi, the standard
// protocol Firefox ships.

import fs from 'node:fs';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export const BROWSERS = ['chromium', 'firefox'];

// Where Debian puts them; PABI_CHROMIUM and PABI_FIREFOX name others.
const CANDIDATES = {
  chromium: [process.env.PABI_CHROMIUM, '/usr/bin/chromium', '/usr/lib/chromium/chromium'],
  // The real binary, not the /usr/bin wrapper script, so that the driver
  // owns the browser process.
  firefox: [process.env.PABI_FIREFOX, '/usr/lib/firefox-esr/firefox-esr', '/usr/bin/firefox-esr'],
};

/**
 * The executable of `name`, or an error naming what to install.
 * @param {string} name
 */
export function executableOf(name) {
  const found = CANDIDATES[name].find((p) => p && fs.existsSync(p));
  if (!found) {
    throw new Error(`${name} is not installed (looked for ${CANDIDATES[name].filter(Boolean).join(', ')}); run ci/setup, or apt-get install ${name === 'firefox' ? 'firefox-esr' : 'chromium'}`);
  }
  return found;
}

/**
 * Starts `name` headless; resolves with { version, open(url), close() },
 * where open() resolves with a page: evaluate(fn, arg), waitFor(fn, ms)
 * (until fn() is true in the page), setFile(selector, path) (picks a file
 * in a file input, as a user does), fill(selector, text), click(selector),
 * close(), and `raw`, the driver's own page object. The two drivers name
 * and shape these differently.
 * @param {'chromium' | 'firefox'} name
 */
export async function launch(name) {
  const executablePath = executableOf(name);
  if (name === 'chromium') {
    // V8 compiles a wasm function on its first call unless told otherwise,
    // which puts a large function's compile inside that call's deadline
    // (LIM-3; the case many-locals). Node's host turns eager compilation on
    // around its own compile; a page cannot touch the engine's flags, so
    // the browser is started with it, as a deployment that needs large
    // functions compiled at load starts its Chromium (README, "What differs
    // from Node"). SpiderMonkey compiles every function at load anyway.
    const args = ['--js-flags=--no-wasm-lazy-compilation'];
    const browser = await chromium.launch({ executablePath, headless: true, timeout: 60000, args });
    return {
      version: `Chromium ${browser.version()}`,
      open: async (url) => {
        const page = await browser.newPage();
        await page.goto(url);
        return {
          raw: page,
          evaluate: (fn, arg) => page.evaluate(fn, arg),
          waitFor: (fn, ms) => page.waitForFunction(fn, undefined, { timeout: ms }),
          setFile: (selector, path) => page.setInputFiles(selector, path),
          fill: (selector, text) => page.fill(selector, text),
          click: (selector) => page.click(selector),
          close: () => page.close(),
        };
      },
      close: () => browser.close(),
    };
  }
  const browser = await puppeteer.launch({ browser: 'firefox', executablePath, headless: true, timeout: 60000 });
  return {
    version: `Firefox ${(await browser.version()).replace(/^firefox\//i, '')}`,
    open: async (url) => {
      const page = await browser.newPage();
      await page.goto(url);
      return {
        raw: page,
        evaluate: (fn, arg) => page.evaluate(fn, arg),
        waitFor: (fn, ms) => page.waitForFunction(fn, { timeout: ms }),
        setFile: async (selector, path) => (await page.$(selector)).uploadFile(path),
        fill: async (selector, text) => {
          await page.$eval(selector, (e) => { e.value = ''; });
          await page.type(selector, text);
        },
        click: (selector) => page.click(selector),
        close: () => page.close(),
      };
    },
    close: () => browser.close(),
  };
}
