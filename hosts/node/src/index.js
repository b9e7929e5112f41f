// @ts-check
// pabi host for Node.js: the public API, and nothing else. The platform's
// own modules are in this folder; the code both platforms share is in
// ../../shared/.
export { loadPlugin, Plugin, Host } from './plugin.js';
export { DEFAULT_LIMITS, Oversized, escapeText } from '../../shared/options.js';
export { Canceller } from '../../shared/cancel.js';
export { HostFunction } from '../../shared/host.js';
export { PabiError, KINDS, DESCRIPTIONS } from '../../shared/errors.js';
export { checkPlugin, HOST_ABI_TEXT, ABI_VERSIONS } from '../../shared/check.js';
export { readPluginFile } from './file.js';
