// pabi host for Node.js: public API.
export { loadPlugin, Plugin, Host, DEFAULT_LIMITS, Oversized, escapeText } from './plugin.js';
export { HostFunction } from './host.js';
export { PabiError, KINDS, DESCRIPTIONS } from './errors.js';
export { checkPlugin, HOST_ABI_TEXT, ABI_VERSIONS } from './check.js';
