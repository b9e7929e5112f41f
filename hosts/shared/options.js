// @ts-check
// The options of loadPlugin and Host: their types, their defaults, and the
// byte values the API accepts.

import { PabiError, KINDS } from './errors.js';
import { toHostFunctions } from './host.js';
import { HOST_ABI_TEXT } from './check.js';

/**
 * The limits of a plugin (LIM-1 to LIM-14); see the README's table.
 * @typedef {object} Limits
 * @property {number} timeoutMs LIM-3: a call's deadline, in milliseconds
 * @property {number} maxMemory LIM-1: the memory cap, in bytes
 * @property {number} maxOutput LIM-5: a call's output, in bytes
 * @property {number | null} fuel LIM-4: not supported; anything but null is refused
 * @property {number} stackSizeMB LIM-7: V8's stack for the worker, at least 512 KiB
 * @property {number} maxTableElements LIM-8: the elements of one table
 * @property {number} maxTotalTableElements LIM-8: the elements of all tables together
 * @property {number} maxLog LIM-11: log text per call
 * @property {number} maxModuleSize LIM-12: bytes of the module
 * @property {number} maxFunctions LIM-12: functions the module defines
 * @property {number} maxFunctionSize LIM-12: bytes of one function body
 * @property {number} maxInput LIM-13: input, configuration and state, in bytes
 * @property {number} maxRequest LIM-14: a host call's request, in bytes
 * @property {number} maxReply LIM-14: a host call's reply, in bytes
 * @property {number} heapMB the JavaScript heap of the worker that runs an instance, in MiB
 */

/** @type {Readonly<Limits>} */
export const DEFAULT_LIMITS = Object.freeze({
  timeoutMs: 1000, // LIM-3
  maxMemory: 128 * 1024 * 1024, // LIM-1
  maxOutput: 16 * 1024 * 1024, // LIM-5
  fuel: null, // LIM-4: not supported by this host
  stackSizeMB: 4, // LIM-7: V8's stack for the worker, at least 512 KiB
  maxTableElements: 10000, // LIM-8, per table
  // LIM-8 caps each table, not their number. Table elements live in the
  // worker's JavaScript heap, and V8 fills a table while it instantiates,
  // where a heap limit cannot stop it (30,000 tables of 10,000 elements
  // took 3 GB). So the elements all tables may reach together, each at
  // its maximum after the rewrite, are bounded too, at 80 MB of heap.
  maxTotalTableElements: 10000000,
  maxLog: 1024 * 1024, // LIM-11: log text per call, records and stdout/stderr together
  maxModuleSize: 32 * 1024 * 1024, // LIM-12: bytes of the module
  maxFunctions: 100000, // LIM-12: functions the module defines
  maxFunctionSize: 1024 * 1024, // LIM-12: bytes of one function body
  maxInput: 2147483647, // LIM-13: input, configuration and state
  maxRequest: 1024 * 1024, // LIM-14: a host call's request
  maxReply: 1024 * 1024, // LIM-14: a host call's reply
  // The JavaScript heap of the worker that runs an instance. The host
  // keeps its own per-call data in byte buffers outside that heap; what
  // lives in it is the plugin's tables and the host's bookkeeping. A
  // worker that exhausts it is stopped and the call is MEMORY_LIMIT.
  heapMB: 256,
});

/**
 * Bytes, as the API takes them: a Uint8Array or another view, an
 * ArrayBuffer, an array of byte values, or a string (as UTF-8).
 * @typedef {ArrayBufferView | ArrayBufferLike | ArrayLike<number> | string} BytesLike
 */

/**
 * A host function given as a record (host.js, HostFunction).
 * @typedef {object} HostFunctionRecord
 * @property {string} name
 * @property {import('./host.js').Handler} handler
 * @property {string[]} [onlyFor]
 */

/**
 * The options of loadPlugin, Plugin and Host.
 * @typedef {object} LoadOptions
 * @property {BytesLike | Oversized} [config] configuration bytes for pabi_init (default empty)
 * @property {Partial<Limits>} [limits] any of DEFAULT_LIMITS
 * @property {string[]} [allow] capabilities the host allows (WASI-5); `fs:` ones are never granted
 * @property {Record<string, string>} [env] values for `env:NAME` capabilities
 * @property {(level: number, text: string) => void} [onLog] the plugin's records;
 *   default: standard error, escaped (SEC-3)
 * @property {(text: string) => void} [onHostLog] the host's own lines (a call's dropped
 *   log text, a failed pabi_shutdown); default: standard error
 * @property {{ max?: number, windowMs?: number }} [crashLoop] LIFE-7, default { max: 5, windowMs: 60000 }
 * @property {Array<import('./host.js').HostFunction | HostFunctionRecord>} [hostFunctions]
 *   what the application offers to host calls (CALL-4, CALL-5); default none
 * @property {string} [abi] the ABI version the host offers, '1.1' (default) or '1.0'
 *   (CALL-9): at '1.0' a plugin declaring 1.1 is VERSION_MISMATCH
 */

/**
 * Stands for bytes too long to hold in memory, known only by their length,
 * so that an input, configuration or state past LIM-13 can be refused by
 * its length (the adapter makes one from the size of a file it does not
 * read). Accepted wherever the API takes bytes.
 */
export class Oversized {
  /** @param {number} length */
  constructor(length) {
    this.length = length;
  }
}

/**
 * The limits of `options`, defaults filled in. Refuses a fuel budget
 * (LIM-4): a host that cannot meter fuel refuses a configuration that asks
 * for it rather than ignore it.
 * @param {Partial<Limits>} [given]
 * @returns {Limits}
 */
export function readLimits(given = {}) {
  /** @type {Limits} */
  const limits = { ...DEFAULT_LIMITS, ...given };
  for (const [k, v] of Object.entries(limits)) if (v === undefined) limits[k] = DEFAULT_LIMITS[k];
  if (limits.fuel !== null) {
    throw new PabiError(KINDS.NOT_SUPPORTED, { clause: 'LIM-4', detail: '[LIM-4] V8 offers no fuel metering; this host refuses a fuel budget rather than ignore it' });
  }
  // LIM-14: the caps are at most what an i32 return value can count.
  for (const k of /** @type {const} */ (['maxRequest', 'maxReply'])) limits[k] = Math.min(limits[k], 2147483647);
  return limits;
}

/**
 * Where a platform writes the host's own lines and the default log: Node's
 * standard error, a browser's console.
 * @typedef {{ name: string, writeError: (line: string) => void }} Output
 */

/**
 * The settings of `options` that do not depend on the plugin, defaults
 * filled in. The limits are read before the host functions, so that a
 * fuel budget is refused first.
 * @param {LoadOptions} options
 * @param {Output} output
 */
export function readOptions(options, output) {
  const limits = readLimits(options.limits);
  const allow = (options.allow ?? []).filter((c) => !c.startsWith('fs:'));
  const hostFunctions = toHostFunctions(options.hostFunctions);
  return {
    limits,
    allow,
    hostFunctions,
    abi: options.abi ?? HOST_ABI_TEXT,
    env: options.env ?? {},
    onHostLog: options.onHostLog ?? ((/** @type {string} */ text) => { output.writeError(`${output.name}: ${text}`); }),
    crashLoop: { max: 5, windowMs: 60000, ...(options.crashLoop ?? {}) },
  };
}

/**
 * The options of a Host with those of one load added: `limits` field by
 * field, `hostFunctions` after the host's.
 * @param {LoadOptions} base
 * @param {LoadOptions} extra
 * @returns {LoadOptions}
 */
export function mergeOptions(base, extra) {
  return {
    ...base,
    ...extra,
    limits: { ...(base.limits ?? {}), ...(extra.limits ?? {}) },
    hostFunctions: [...toHostFunctions(base.hostFunctions), ...toHostFunctions(extra.hostFunctions)],
  };
}

const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];

/**
 * Plugin text made safe for a terminal (SEC-3): its control characters,
 * escape sequences and line breaks escaped, so that it cannot move the
 * cursor, rewrite earlier lines or forge a record.
 * @param {string} text
 * @returns {string}
 */
export function escapeText(text) {
  // JSON escapes C0 controls only; DEL, the C1 controls (U+009B is a
  // terminal's CSI) and the line and paragraph separators too (SEC-3).
  return JSON.stringify(text).slice(1, -1)
    .replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The default onLog: a plugin's records on the platform's error output, escaped.
 * @param {string} pluginName
 * @param {Output} output
 * @returns {(level: number, text: string) => void}
 */
export function defaultLog(pluginName, output) {
  return (level, text) => {
    output.writeError(`[${pluginName}] ${LEVELS[level]}: ${escapeText(text)}`);
  };
}

/**
 * The length of bytes the API was given, without copying a Uint8Array.
 * @param {BytesLike | Oversized} v
 */
export function lengthOf(v) {
  if (v instanceof Oversized || v instanceof Uint8Array) return v.length;
  return toBytes(v).length;
}

/**
 * The bytes the API was given, as a Uint8Array (the same one when it is one).
 * @param {BytesLike | Oversized} v
 * @returns {Uint8Array}
 */
export function toBytes(v) {
  if (v instanceof Oversized) throw new TypeError('bytes known only by their length cannot be read');
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(/** @type {ArrayLike<number>} */ (v));
}
