// The host error kinds of abi.md (ERR-6), with their fixed descriptions.

export const DESCRIPTIONS = {
  INVALID_MODULE: 'the plugin is not a valid pabi module',
  VERSION_MISMATCH: 'the plugin needs an ABI version this host does not implement',
  MISSING_CAPABILITY: 'the plugin declares a capability the host does not allow',
  ABI_VIOLATION: 'the plugin broke the ABI',
  TRAP: 'the plugin trapped',
  TIMEOUT: 'the call ran past its deadline',
  FUEL_EXHAUSTED: 'the call ran out of fuel',
  MEMORY_LIMIT: 'the plugin hit the memory limit',
  OUTPUT_LIMIT: 'the plugin wrote more output than the limit allows',
  MODULE_LIMIT: 'the plugin is larger than this host compiles',
  INPUT_LIMIT: 'the input is longer than the host accepts',
  UNKNOWN_STATUS: 'the plugin returned a status code the ABI does not define',
  PLUGIN_ERROR: 'the plugin returned an error status',
  UNKNOWN_FUNCTION: 'the plugin has no function of that name',
  CRASH_LOOP: 'the plugin failed too often and was disabled',
  UNSUPPORTED: 'the plugin needs a part of the ABI this host does not implement',
  // This host has no API to cancel a call (a call ends by returning, by its
  // deadline or by a trap), so it never raises CANCELLED; the kind is listed
  // so that every ERR-6 kind has its description here.
  CANCELLED: "the call was cancelled by the host's caller",
  HOST_FAILURE: 'the host failed, not the plugin',
  // Not an error kind of the ABI: a limit or grant this host cannot apply
  // (host-guide, "The adapter command", step 5).
  NOT_SUPPORTED: 'this host cannot apply the requested limit or grant',
};

// Kinds after which the instance is dead (LIFE-5). MODULE_LIMIT is only
// raised at load, before any instance exists; INPUT_LIMIT is raised before
// any plugin code runs, so the instance stays live (LIM-13).
// CANCELLED leaves the instance dead too, but is not a failure of the
// plugin and is not counted by LIFE-7 (this host never raises it).
export const DEAD_KINDS = new Set(['ABI_VIOLATION', 'TRAP', 'TIMEOUT', 'FUEL_EXHAUSTED', 'MEMORY_LIMIT', 'OUTPUT_LIMIT']);

export const STATUS_NAMES = { 1: 'INVALID_INPUT', 2: 'UNSUPPORTED', 3: 'FAILED', 4: 'OUT_OF_MEMORY' };

/**
 * A failed load or call. `kind` is one of the ERR-6 kind names.
 * For PLUGIN_ERROR, `status` is the plugin's status and `pluginMessage` the
 * plugin's message bytes exactly as written (ERR-7); `message` is the
 * host's text, which starts with the fixed description.
 */
export class PabiError extends Error {
  constructor(kind, { status, pluginMessage, clause, detail, trap } = {}) {
    const parts = [DESCRIPTIONS[kind] ?? kind];
    if (detail) parts.push(detail);
    if (pluginMessage !== undefined) parts.push(new TextDecoder().decode(pluginMessage));
    super(parts.join(': '));
    this.name = 'PabiError';
    this.kind = kind;
    if (status !== undefined) this.status = status;
    if (pluginMessage !== undefined) this.pluginMessage = pluginMessage;
    if (clause !== undefined) this.clause = clause;
    if (detail !== undefined) this.detail = detail;
    if (trap !== undefined) this.trap = trap;
  }

  toJSON() {
    const out = { kind: this.kind, message: this.message };
    for (const k of ['status', 'clause', 'trap', 'detail']) if (this[k] !== undefined) out[k] = this[k];
    return out;
  }

  static from(plain) {
    const e = new PabiError(plain.kind, plain);
    return e;
  }
}
