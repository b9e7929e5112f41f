// @ts-check
// pabi host for web pages: the public API, and nothing else. The same API
// as the Node host's (../../node/src/index.js), with loads and calls that
// return Promises; the differences are in hosts/web/README.md.
export { loadPlugin, Plugin, Host, checkIsolation } from './plugin.js';
export { DEFAULT_LIMITS, Oversized, escapeText } from '../../shared/options.js';
export { Canceller } from '../../shared/cancel.js';
export { HostFunction } from '../../shared/host.js';
export { PabiError, KINDS, DESCRIPTIONS } from '../../shared/errors.js';
export { checkPlugin, HOST_ABI_TEXT, ABI_VERSIONS } from '../../shared/check.js';
