// @ts-check
// Host functions: what the embedding application offers to plugins' host
// calls (CALL-1 … CALL-9). The Host that holds them with the settings
// shared by every plugin it loads is HostSettings in lifecycle.js, which
// each platform's Host extends.
//
// A handler is a synchronous JavaScript function of the request bytes. It
// runs in the main thread (Node's, or a page's) while the plugin's call
// waits in its worker (instance.js): the plugin is blocked inside
// `host_call`, so the handler's time counts against the call's deadline
// (CALL-7).

import { HOST_CALL_NAME } from './check.js';

/**
 * What a handler is told of the host call it serves: the plugin's metadata
 * name, the plugin function being served and the host call's name.
 * @typedef {{ readonly plugin: string, readonly function: string, readonly hostCall: string }} HostCallContext
 */

/**
 * A host function's code: the reply to a request (CALL-4).
 * @typedef {(request: Uint8Array, context: HostCallContext) => Uint8Array | ArrayBufferView | ArrayBuffer | string} Handler
 */

/**
 * A function the application offers under a host-call name.
 *
 * handler(request: Uint8Array, context) returns the reply: a Uint8Array,
 * another ArrayBuffer view, an ArrayBuffer or a string (sent as UTF-8).
 * Throwing is a handler failure: the plugin sees E_FAILED and reads the
 * error's message as the reply (CALL-4). context is
 * { plugin, function, hostCall }: the plugin's metadata name, the plugin
 * function being served (`upper` for `pabi_fn_upper`, `pabi_init` while
 * the plugin initializes) and the host call's name.
 *
 * options.onlyFor  the metadata names of the plugins it is offered to;
 *                  absent: every plugin that declares it (CALL-5).
 */
export class HostFunction {
  /**
   * @param {string} name the host-call name (CALL-2)
   * @param {Handler} handler
   * @param {{ onlyFor?: string[] }} [options]
   */
  constructor(name, handler, { onlyFor } = {}) {
    // CALL-2: a host offers only names of the grammar, none in `pabi`.
    if (typeof name !== 'string' || !HOST_CALL_NAME.test(name)) {
      throw new TypeError(`${JSON.stringify(name)} cannot be a host function: a name is two to four dot-separated parts of [a-z][a-z0-9_]{0,31} (CALL-2)`);
    }
    if (name.startsWith('pabi.')) throw new TypeError(`"${name}" cannot be a host function: the namespace \`pabi\` is reserved (CALL-2)`);
    if (typeof handler !== 'function') throw new TypeError(`the handler of "${name}" is not a function`);
    if (onlyFor !== undefined && (!Array.isArray(onlyFor) || !onlyFor.every((p) => typeof p === 'string'))) {
      throw new TypeError(`onlyFor of "${name}" must be an array of plugin names`);
    }
    this.name = name;
    this.handler = handler;
    this.onlyFor = onlyFor === undefined ? null : [...onlyFor];
    Object.freeze(this);
  }

  /** Whether the function is offered to the plugin whose metadata name is `plugin`. */
  offeredTo(plugin) {
    return this.onlyFor === null || this.onlyFor.includes(plugin);
  }
}

/**
 * The handler of host call `name` for the plugin `plugin`, or null when
 * the application does not offer it to that plugin (CALL-5). Of several
 * functions of one name offered to the plugin, the last one wins.
 */
export function handlerFor(functions, name, plugin) {
  for (let i = functions.length - 1; i >= 0; i--) {
    if (functions[i].name === name && functions[i].offeredTo(plugin)) return functions[i].handler;
  }
  return null;
}

/** Accepts HostFunction objects or { name, handler, onlyFor } records. */
export function toHostFunctions(list = []) {
  if (!Array.isArray(list)) throw new TypeError('hostFunctions must be an array');
  return list.map((f) => (f instanceof HostFunction ? f : new HostFunction(f?.name, f?.handler, { onlyFor: f?.onlyFor })));
}

const EMPTY = new Uint8Array(0);
// CALL-4: a handler's failure message reaches the plugin cut to this many
// bytes, at a character boundary.
export const FAILURE_CAP = 65536;
const E_LIMIT = -1;
const E_FAILED = -4;

/** A failure message as the reply of E_FAILED: UTF-8, at most FAILURE_CAP bytes, cut before a character that does not fit (CALL-4). */
export function failureReply(text) {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= FAILURE_CAP) return bytes;
  let cut = FAILURE_CAP;
  // Back up over continuation bytes (10xxxxxx) to the start of the
  // character that the cap splits.
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--;
  return bytes.slice(0, cut);
}

// What a thrown value says: an error's message, else its text.
function messageOf(e) {
  try {
    if (e !== null && typeof e === 'object' && typeof e.message === 'string') return e.message;
    return String(e);
  } catch {
    return 'the handler failed with a value that has no text';
  }
}

// The reply bytes of what a handler returned, as a fresh buffer of their
// own (a view of a larger or shared buffer would otherwise carry all of
// it to the worker), or null when it is not bytes.
function replyBytes(value) {
  if (typeof value === 'string') return new TextEncoder().encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice();
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && value instanceof SharedArrayBuffer)) return new Uint8Array(value).slice();
  return null;
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? `an object (${value.constructor?.name ?? 'no class'})` : `a ${typeof value}`;
}

/**
 * Runs a handler for one host call and gives what `host_call` returns to
 * the plugin: { code, reply }. The reply's length on success (CALL-4);
 * E_LIMIT with an empty reply when it is longer than `maxReply` (LIM-14);
 * E_FAILED with the message as the reply when the handler throws, or
 * answers with something that is not bytes (CALL-4). Handlers answer
 * synchronously: the plugin's worker waits, and so does the caller of
 * plugin.call, whose API is synchronous; a Promise is a failure.
 */
export function runHandler(handler, request, context, maxReply) {
  let value;
  try {
    value = handler(request, context);
  } catch (e) {
    return { code: E_FAILED, reply: failureReply(messageOf(e)) };
  }
  if (value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function') {
    // Nobody waits for it; a rejection must not end the process as unhandled.
    Promise.resolve(value).catch(() => {});
    return { code: E_FAILED, reply: failureReply(`the handler of \`${context.hostCall}\` returned a Promise; this host runs handlers synchronously`) };
  }
  const reply = replyBytes(value);
  if (reply === null) {
    return { code: E_FAILED, reply: failureReply(`the handler of \`${context.hostCall}\` returned ${describe(value)}, not bytes or a string`) };
  }
  if (reply.length > maxReply) return { code: E_LIMIT, reply: EMPTY };
  return { code: reply.length, reply };
}
