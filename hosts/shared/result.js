// The result lines of the conformance adapter (spec/host-guide.md, "Result
// lines"), shared by the adapters of both platforms and kept apart from
// them so that tests can check every shape a line can take without
// spawning an adapter.

import { PabiError, KINDS } from './errors.js';
import { toHex } from './hex.js';

// Fields a failure line may carry, each only for the kinds the protocol
// gives it (host-guide, "Result lines"; spec/schemas/adapter-result.schema.json).
// A field is written only when it has a value of its type: a runner
// validates lines against the schema, and `null` or a stray field would
// fail it.
const STATUS_KINDS = new Set([KINDS.PLUGIN_ERROR, KINDS.UNKNOWN_STATUS]);
const CLAUSE_KINDS = new Set([KINDS.ABI_VIOLATION, KINDS.NOT_SUPPORTED, KINDS.INVALID_MODULE]);
const CLAUSE_ID = /^(MOD|MEM|IMP|EXP|FN|ERR|VER|LIFE|META|WASI|CALL|LIM|SEC|HOST)-[1-9][0-9]*$/;
// ERR-9.
const TRAP_KINDS = new Set(['unreachable', 'memory_out_of_bounds', 'table_out_of_bounds', 'indirect_call_null',
  'indirect_call_type', 'integer_divide_by_zero', 'integer_overflow', 'invalid_conversion', 'stack_overflow',
  'null_reference', 'other']);
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

// The host calls the application received during the call, in order, as
// { name, request_hex }; the field is left out when there were none
// (host-guide, "Result lines").
function withHostCalls(line, hostCalls) {
  if (hostCalls && hostCalls.length) line.host_calls = hostCalls.map(({ name, request }) => ({ name, request_hex: toHex(request) }));
  return line;
}

/**
 * The line of a failed load or call; rethrows anything that is not a
 * PabiError. `hostCalls`: the { name, request } the application received.
 */
export function failure(e, hostCalls = []) {
  if (!(e instanceof PabiError)) throw e;
  const line = { ok: false, kind: e.kind };
  // PLUGIN_ERROR carries the plugin's own message unchanged (ERR-7); a JSON
  // string cannot hold invalid UTF-8, so those bytes become U+FFFD.
  line.message = e.kind === KINDS.PLUGIN_ERROR
    ? new TextDecoder().decode(e.pluginMessage ?? new Uint8Array(0))
    : String(e.message);
  const status = e.status;
  if (STATUS_KINDS.has(e.kind) && Number.isInteger(status) && status >= INT32_MIN && status <= INT32_MAX) line.status = status;
  if (CLAUSE_KINDS.has(e.kind) && typeof e.clause === 'string' && CLAUSE_ID.test(e.clause)) line.clause = e.clause;
  if (e.kind === KINDS.TRAP && TRAP_KINDS.has(e.trap)) line.trap = e.trap;
  return withHostCalls(line, hostCalls);
}

/** The line of a call that returned OK with `output`; `hostCalls` as for failure(). */
export function success(output, hostCalls = []) {
  return withHostCalls({ ok: true, output_hex: toHex(output) }, hostCalls);
}
