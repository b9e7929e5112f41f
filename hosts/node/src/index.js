// @ts-check
// pabi host for Node.js: the public API, and nothing else. The other
// modules of src/ are the host's own.
export { loadPlugin, Plugin, Host } from './plugin.js';
export { DEFAULT_LIMITS, Oversized, escapeText } from './options.js';
export { Canceller } from './cancel.js';
export { HostFunction } from './host.js';
export { PabiError, KINDS, DESCRIPTIONS } from './errors.js';
export { checkPlugin, HOST_ABI_TEXT, ABI_VERSIONS } from './check.js';
export { readPluginFile } from './file.js';
