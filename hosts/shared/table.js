// The application side of host calls as data: a host-call table
// (spec/schemas/host-calls.schema.json), which the conformance adapter's
// `--host-calls FILE` reads (host-guide, "The adapter command"). Each name
// it lists is offered (CALL-5); for a request, the first rule whose
// `request` (or `request_hex`) equals it answers, and a rule without one
// matches any request. When no rule matches (a name with no rules
// included), the handler fails (CALL-4) with exactly the message the schema
// fixes, ``the table has no reply for `NAME` with the request R``, which
// every host gives byte for byte: a plugin may pass it on. `delay_ms` makes the handler
// take that long before it answers (CALL-7). `reenter` makes the handler
// call a function of the plugin whose host call it serves, with the
// request as the input, through this host's API: the host refuses that
// call (CALL-8), and the handler then fails with the message `refused`.

import { HostFunction } from './host.js';
import { HOST_CALL_NAME } from './check.js';
import { PabiError, KINDS } from './errors.js';
import { toHex, fromHex } from './hex.js';

const HEX = /^([0-9a-fA-F]{2})*$/;
const RULE_KEYS = new Set(['request', 'request_hex', 'reply', 'reply_hex', 'fail', 'reenter', 'delay_ms']);
const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A table that does not follow the schema. */
export class TableError extends Error {}

/**
 * Reads a table from its JSON text: a Map from each name to its rules,
 * { request: Uint8Array | null, reply: Uint8Array | null, fail: string | null,
 *   reenter: string | null, delayMs }, of which exactly one of reply, fail
 * and reenter is not null.
 * Throws TableError for anything the schema refuses.
 */
export function parseHostCallTable(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new TableError(`not JSON: ${e.message}`);
  }
  if (!isObject(doc)) throw new TableError('a host-call table is a JSON object of names');
  const table = new Map();
  for (const [name, rules] of Object.entries(doc)) {
    if (!HOST_CALL_NAME.test(name)) throw new TableError(`${JSON.stringify(name)} is not a host-call name (CALL-2)`);
    if (!Array.isArray(rules)) throw new TableError(`"${name}": the rules are not an array`);
    table.set(name, rules.map((rule, i) => readRule(rule, `"${name}", rule ${i}`)));
  }
  return table;
}

function readRule(rule, at) {
  if (!isObject(rule)) throw new TableError(`${at}: not an object`);
  for (const key of Object.keys(rule)) if (!RULE_KEYS.has(key)) throw new TableError(`${at}: unknown field "${key}"`);
  const text = (key) => {
    if (key in rule && typeof rule[key] !== 'string') throw new TableError(`${at}: "${key}" is not a string`);
    return rule[key];
  };
  const hex = (key) => {
    const v = text(key);
    if (v !== undefined && !HEX.test(v)) throw new TableError(`${at}: "${key}" is not hex: ${JSON.stringify(v)}`);
    return v === undefined ? undefined : fromHex(v);
  };
  const utf8 = (key) => {
    const v = text(key);
    return v === undefined ? undefined : new TextEncoder().encode(v);
  };
  if ('request' in rule && 'request_hex' in rule) throw new TableError(`${at}: give "request" or "request_hex", not both`);
  const request = utf8('request') ?? hex('request_hex') ?? null;
  const answers = ['reply', 'reply_hex', 'fail', 'reenter'].filter((k) => k in rule);
  if (answers.length !== 1) throw new TableError(`${at}: give exactly one of "reply", "reply_hex", "fail" and "reenter"`);
  const reply = utf8('reply') ?? hex('reply_hex') ?? null;
  const fail = text('fail') ?? null;
  const reenter = text('reenter') ?? null;
  const delayMs = rule.delay_ms ?? 0;
  if (!Number.isInteger(delayMs) || delayMs < 0) throw new TableError(`${at}: "delay_ms" is not a non-negative integer`);
  return { request, reply, fail, reenter, delayMs };
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// R of that message: the request as a JSON string when it is UTF-8 without
// control characters (then JSON escapes only `"` and `\`, as every
// encoder does), else 0x and lowercase hex.
function shown(bytes) {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (!/[\u0000-\u001f\u007f-\u009f]/.test(text)) return JSON.stringify(text);
  } catch {
    // not UTF-8: hex below
  }
  return `0x${toHex(bytes)}`;
}

// Blocks this thread for `ms` milliseconds, as a slow handler would. The
// main thread of a web page may not block in Atomics.wait (it throws
// there), so a page's handler spins on the clock instead.
function sleep(ms) {
  if (!(ms > 0)) return;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  } catch {
    const until = performance.now() + ms;
    while (performance.now() < until);
  }
}

/** The message of a handler whose call back into its plugin was refused (CALL-8). */
export const REENTRY_REFUSED = 'refused';

// Whether `e` is the host's refusal of a call into the plugin whose host
// call is being served: HOST_FAILURE citing CALL-8.
const isRefusal = (e) => e instanceof PabiError && e.kind === KINDS.HOST_FAILURE && e.clause === 'CALL-8';

/**
 * The table's names as host functions. `record(name, request)` is called
 * with every request a handler receives, before it answers.
 * `reenter(function, input)` serves the `reenter` answers: it calls that
 * function of the plugin whose host call the handler serves, through the
 * host's API, and returns its output. The host refuses it with
 * HOST_FAILURE citing CALL-8, and the handler then fails with the message
 * `refused`; had the call run, the handler would reply with its output,
 * and any other error is a failure with its own message. Without
 * `reenter`, such a rule fails saying the plugin cannot be called back.
 */
export function tableFunctions(table, record = () => {}, reenter = null) {
  return [...table].map(([name, rules]) => new HostFunction(name, (request, cx) => {
    record(cx.hostCall, request);
    const rule = rules.find((r) => r.request === null || sameBytes(r.request, request));
    if (!rule) throw new Error(`the table has no reply for \`${cx.hostCall}\` with the request ${shown(request)}`);
    sleep(rule.delayMs);
    if (rule.fail !== null) throw new Error(rule.fail);
    if (rule.reenter !== null) {
      if (!reenter) throw new Error('this application cannot call the plugin back');
      try {
        return reenter(rule.reenter, request);
      } catch (e) {
        if (isRefusal(e)) throw new Error(REENTRY_REFUSED);
        throw e;
      }
    }
    return rule.reply;
  }));
}

/**
 * A table as the conformance adapters run it (host-guide, "The adapter
 * command"), on any platform: its host functions (none without a table);
 * `take()`, the requests the handlers received since the last take, in
 * order, for the next result line (host-guide, "Result lines"); and
 * `serve(plugin)`, which gives the `reenter` answers the loaded plugin to
 * call back into (the host refuses: CALL-8). While the first load runs
 * pabi_init the application has no handle on the plugin yet; that
 * instance is as busy, and the call is refused the same way.
 * @param {Map<string, any[]> | null} table a parsed table, or null
 */
export function adapterTable(table) {
  let received = [];
  /** @type {{ call(fn: string, input: Uint8Array): any } | null} */
  let plugin = null;
  const reenter = (fn, input) => {
    if (!plugin) {
      throw new PabiError(KINDS.HOST_FAILURE, {
        clause: 'CALL-8',
        detail: `[CALL-8] ${fn} was called while the plugin initializes and waits for a host call's handler; a handler must not call into the instance whose host call it serves`,
      });
    }
    return plugin.call(fn, input);
  };
  return {
    functions: table === null ? [] : tableFunctions(table, (name, request) => received.push({ name, request }), reenter),
    take() {
      const list = received;
      received = [];
      return list;
    },
    serve(loaded) {
      plugin = loaded;
    },
  };
}
