// The conformance adapter's steps (spec/host-guide.md, "The adapter
// command"), run in a page with the browser host: ../bin/pabi-web.js
// reads the arguments and the files in Node, the driver
// (../driver/driver.js) hands the case to this page, and the result lines
// come back. The same steps as hosts/node/bin/pabi-node.js, awaited.

import { loadPlugin, Oversized, escapeText, PabiError, KINDS } from '../src/index.js';
import { failure, success } from '../../shared/result.js';
import { adapterTable, parseHostCallTable } from '../../shared/table.js';

/**
 * Bytes sent by the adapter: base64, or the length of bytes too large to
 * send (LIM-13 refuses them by their length).
 * @param {{ b64?: string, oversized?: number }} v
 */
function bytesOf(v) {
  if (v.oversized !== undefined) return new Oversized(v.oversized);
  const text = atob(v.b64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/**
 * Runs one case; resolves with { lines, log }: the result lines, and the
 * plugin's log lines for standard error. An error of the host's own code
 * resolves with { internal } instead.
 * @param {any} c the case (../bin/pabi-web.js)
 */
export async function runCase(c) {
  const lines = [];
  const log = [];
  try {
    if (c.dirs.length) {
      // Host-guide, adapter step 5: this host has no file system.
      const d = c.dirs[0];
      lines.push(failure(new PabiError(KINDS.NOT_SUPPORTED, {
        clause: 'WASI-5',
        detail: `[WASI-5] this host has no file system support and cannot grant the folder ${JSON.stringify(d.host)} at ${JSON.stringify(d.guest)}`,
      })));
      return { lines, log };
    }
    // A `reenter` answer's call is refused at once, synchronously, while
    // the handler runs (CALL-8).
    const table = adapterTable(c.hostCallsText === null ? null : parseHostCallTable(c.hostCallsText));
    const take = () => table.take();
    let plugin;
    try {
      plugin = await loadPlugin(bytesOf(c.plugin), {
        hostFunctions: table.functions,
        abi: c.abi,
        config: bytesOf(c.config),
        limits: c.limits,
        allow: c.allow,
        env: c.env,
        onLog: (level, text) => log.push(`log ${level}: ${escapeText(text)}`),
        onHostLog: (text) => log.push(`pabi-web: ${text}`),
      });
    } catch (e) {
      lines.push(failure(e, take()));
      return { lines, log };
    }
    table.serve(plugin);
    for (const call of c.calls) {
      try {
        let output;
        if (call.fn === '@save') output = await plugin.saveState();
        else if (call.fn === '@load') { await plugin.loadState(bytesOf(call.input)); output = new Uint8Array(0); }
        else output = await plugin.call(call.fn, bytesOf(call.input));
        lines.push(success(output, take()));
      } catch (e) {
        lines.push(failure(e, take()));
      }
    }
    await plugin.close();
    return { lines, log };
  } catch (e) {
    return { lines, log, internal: e && e.stack ? `${e.name}: ${e.message}\n${e.stack}` : String(e) };
  }
}
