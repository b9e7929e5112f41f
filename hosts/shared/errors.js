// @ts-check
// The host error kinds of abi.md (ERR-6), with their fixed descriptions.

/**
 * The error kinds, each its own name: `KINDS.TRAP === 'TRAP'`. Code names a
 * kind through this table, so that a misspelt kind is an undefined property
 * (and a type error) rather than a string that matches nothing.
 */
export const KINDS = Object.freeze({
  INVALID_MODULE: 'INVALID_MODULE',
  VERSION_MISMATCH: 'VERSION_MISMATCH',
  MISSING_CAPABILITY: 'MISSING_CAPABILITY',
  ABI_VIOLATION: 'ABI_VIOLATION',
  TRAP: 'TRAP',
  TIMEOUT: 'TIMEOUT',
  FUEL_EXHAUSTED: 'FUEL_EXHAUSTED',
  MEMORY_LIMIT: 'MEMORY_LIMIT',
  OUTPUT_LIMIT: 'OUTPUT_LIMIT',
  MODULE_LIMIT: 'MODULE_LIMIT',
  INPUT_LIMIT: 'INPUT_LIMIT',
  UNKNOWN_STATUS: 'UNKNOWN_STATUS',
  PLUGIN_ERROR: 'PLUGIN_ERROR',
  UNKNOWN_FUNCTION: 'UNKNOWN_FUNCTION',
  CRASH_LOOP: 'CRASH_LOOP',
  UNSUPPORTED: 'UNSUPPORTED',
  CANCELLED: 'CANCELLED',
  HOST_FAILURE: 'HOST_FAILURE',
  // Not an error kind of the ABI: a limit or grant this host cannot apply
  // (host-guide, "The adapter command", step 5).
  NOT_SUPPORTED: 'NOT_SUPPORTED',
});

/** @typedef {keyof typeof KINDS} Kind */

/** @type {Readonly<Record<Kind, string>>} */
export const DESCRIPTIONS = Object.freeze({
  [KINDS.INVALID_MODULE]: 'the plugin is not a valid pabi module',
  [KINDS.VERSION_MISMATCH]: 'the plugin needs an ABI version this host does not implement',
  [KINDS.MISSING_CAPABILITY]: 'the plugin declares a capability or a required host call that this host does not grant',
  [KINDS.ABI_VIOLATION]: 'the plugin broke the ABI',
  [KINDS.TRAP]: 'the plugin trapped',
  [KINDS.TIMEOUT]: 'the call ran past its deadline',
  [KINDS.FUEL_EXHAUSTED]: 'the call ran out of fuel',
  [KINDS.MEMORY_LIMIT]: 'the plugin hit the memory limit',
  [KINDS.OUTPUT_LIMIT]: 'the plugin wrote more output than the limit allows',
  [KINDS.MODULE_LIMIT]: 'the plugin is larger than this host compiles',
  [KINDS.INPUT_LIMIT]: 'the input is longer than the host accepts',
  [KINDS.UNKNOWN_STATUS]: 'the plugin returned a status code the ABI does not define',
  [KINDS.PLUGIN_ERROR]: 'the plugin returned an error status',
  [KINDS.UNKNOWN_FUNCTION]: 'the plugin has no function of that name',
  [KINDS.CRASH_LOOP]: 'the plugin failed too often and was disabled',
  [KINDS.UNSUPPORTED]: 'the plugin needs a part of the ABI this host does not implement',
  [KINDS.CANCELLED]: "the call was cancelled by the host's caller",
  [KINDS.HOST_FAILURE]: 'the host failed, not the plugin',
  [KINDS.NOT_SUPPORTED]: 'this host cannot apply the requested limit or grant',
});

// Kinds after which the instance is dead (LIFE-5). MODULE_LIMIT is only
// raised at load, before any instance exists; INPUT_LIMIT is raised before
// any plugin code runs, so the instance stays live (LIM-13).
// CANCELLED leaves the instance dead too, but is not a failure of the
// plugin and is not counted by LIFE-7; nor is HOST_FAILURE.
/** @type {ReadonlySet<Kind>} */
export const DEAD_KINDS = new Set([KINDS.ABI_VIOLATION, KINDS.TRAP, KINDS.TIMEOUT, KINDS.FUEL_EXHAUSTED, KINDS.MEMORY_LIMIT, KINDS.OUTPUT_LIMIT]);

export const STATUS_NAMES = { 1: 'INVALID_INPUT', 2: 'UNSUPPORTED', 3: 'FAILED', 4: 'OUT_OF_MEMORY' };

/**
 * What a failure carries besides its kind (ERR-6, ERR-7, ERR-9).
 * @typedef {object} ErrorFields
 * @property {number} [status] the plugin's status, for PLUGIN_ERROR and UNKNOWN_STATUS
 * @property {Uint8Array} [pluginMessage] the plugin's message bytes, for PLUGIN_ERROR
 * @property {string} [clause] the clause the plugin broke, e.g. 'MEM-3'
 * @property {string} [detail] the host's explanation, after the fixed description
 * @property {string} [trap] the trap kind of ERR-9, for TRAP
 */

/**
 * A failed load or call. `kind` is one of the ERR-6 kind names (KINDS).
 * For PLUGIN_ERROR, `status` is the plugin's status and `pluginMessage` the
 * plugin's message bytes exactly as written (ERR-7); `message` is the
 * host's text, which starts with the fixed description.
 */
export class PabiError extends Error {
  /**
   * @param {Kind} kind
   * @param {ErrorFields} [fields]
   */
  constructor(kind, { status, pluginMessage, clause, detail, trap } = {}) {
    const parts = [DESCRIPTIONS[kind] ?? kind];
    if (detail) parts.push(detail);
    if (pluginMessage !== undefined) parts.push(new TextDecoder().decode(pluginMessage));
    super(parts.join(': '));
    this.name = 'PabiError';
    /** @type {Kind} */
    this.kind = kind;
    if (status !== undefined) this.status = status;
    if (pluginMessage !== undefined) this.pluginMessage = pluginMessage;
    if (clause !== undefined) this.clause = clause;
    if (detail !== undefined) this.detail = detail;
    if (trap !== undefined) this.trap = trap;
  }

  toJSON() {
    /** @type {Record<string, unknown>} */
    const out = { kind: this.kind, message: this.message };
    for (const k of /** @type {const} */ (['status', 'clause', 'trap', 'detail'])) if (this[k] !== undefined) out[k] = this[k];
    return out;
  }
}
