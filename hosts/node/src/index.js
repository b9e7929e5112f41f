// pabi host for Node.js: public API.
export { loadPlugin, Plugin, DEFAULT_LIMITS, Oversized, escapeText } from './plugin.js';
export { PabiError, DESCRIPTIONS } from './errors.js';
export { checkPlugin, HOST_ABI_TEXT } from './check.js';
