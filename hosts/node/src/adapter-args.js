// The arguments of the conformance adapters (spec/host-guide.md, "The
// adapter command"), read the same way by Node's (bin/pabi-node.js) and the
// browsers' (../../web/bin/pabi-web.js): files are read here, in Node, and
// the plugin's host gets bytes.

import fs from 'node:fs';
import { Oversized } from '../../shared/options.js';
import { ABI_VERSIONS } from '../../shared/check.js';
import { parseHostCallTable, TableError } from '../../shared/table.js';

let program = 'pabi-node';
// The usage line's command: the program, and any arguments of its own.
let command = 'pabi-node';

/**
 * Says what is wrong with the arguments, and exits with 2.
 * @param {string} message
 * @returns {never}
 */
export function usage(message) {
  process.stderr.write(`${program}: ${message}\n`);
  process.stderr.write(`usage: ${command} PLUGIN.wasm FUNCTION --input-hex HEX [--then FUNCTION:HEX]... [--config-hex HEX] [--timeout-ms N] [--max-memory BYTES] [--max-output BYTES] [--fuel N] [--allow-clock] [--allow-random] [--env NAME=VALUE]... [--dir HOST:GUEST[:ro]]... [--max-request BYTES] [--max-reply BYTES] [--host-calls FILE] [--abi VERSION] --format json\n`);
  process.exit(2);
}

function hex(text, what) {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) usage(`${what}: not hex: ${JSON.stringify(text)}`);
  return new Uint8Array(Buffer.from(text, 'hex'));
}

// Raw bytes from a file. Linux refuses a single argument of 128 KiB or
// more, so the runner passes large inputs as files: `--input FILE`,
// `--config FILE`, and `--then FUNCTION:@FILE`. A file longer than the ABI
// can address (LIM-13) is not read: the host refuses it by its length with
// INPUT_LIMIT, which Node could not do after failing to read it.
const MAX_INPUT = 2147483647;
function file(path, what) {
  try {
    const size = fs.statSync(path).size;
    if (size > MAX_INPUT) return new Oversized(size);
    return new Uint8Array(fs.readFileSync(path));
  } catch (e) {
    return usage(`${what}: cannot read ${path}: ${e.message}`);
  }
}

function integer(text, what) {
  if (!/^[0-9]+$/.test(text)) usage(`${what}: not a non-negative integer: ${JSON.stringify(text)}`);
  return Number(text);
}

// LIM-14: a host-call cap is at most 2^31 - 1 bytes, what an i32 return
// value can count; a larger one is a bad argument, not lowered to the
// maximum, so that a case never runs under a cap other than the one it set.
function hostCallCap(text, what) {
  const cap = integer(text, what);
  if (cap > 2147483647) usage(`${what}: at most 2147483647 bytes (LIM-14), not ${text}`);
  return cap;
}

// `--dir HOST:GUEST[:ro]`: HOST is split at the last `:` followed by `/`,
// since a guest path starts with `/` (host-guide, "The adapter command").
function dir(text) {
  const readOnly = text.endsWith(':ro');
  const rest = readOnly ? text.slice(0, -3) : text;
  const at = rest.lastIndexOf(':/');
  if (at <= 0) usage(`--dir needs HOST:GUEST[:ro], not ${JSON.stringify(text)}`);
  return { host: rest.slice(0, at), guest: rest.slice(at + 1), readOnly };
}

// `--host-calls FILE`: the application's side of host calls, a table
// (src/table.js). A table that cannot be read or does not follow the
// schema is a bad argument.
function hostCallTable(path) {
  let text;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    return usage(`--host-calls: cannot read ${path}: ${e.message}`);
  }
  try {
    return parseHostCallTable(text);
  } catch (e) {
    if (e instanceof TableError) return usage(`--host-calls ${path}: ${e.message}`);
    throw e;
  }
}

/**
 * The adapter's arguments (host-guide, "The adapter command"); exits
 * with 2 on a bad one. `name` is the adapter's, for its messages;
 * `own`, the arguments it takes before these, for its usage line.
 * @param {string[]} argv
 * @param {string} name
 * @param {string} [own]
 */
export function parseArgs(argv, name, own = '') {
  program = name;
  command = own ? `${name} ${own}` : name;
  const positional = [];
  // The grant flags are the host's configuration (WASI-5): what the plugin
  // may be granted, not what it gets; it gets only what it also declares.
  const opts = {
    calls: [], config: new Uint8Array(0), limits: {}, input: new Uint8Array(0),
    allow: new Set(), env: Object.create(null), dirs: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--input-hex': opts.input = hex(value(), a); break;
      case '--input': case '--input-file': opts.input = file(value(), a); break;
      case '--then': {
        const v = value();
        const at = v.indexOf(':');
        if (at < 0) usage(`--then needs FUNCTION:HEX, not ${JSON.stringify(v)}`);
        const data = v.slice(at + 1);
        opts.calls.push({ fn: v.slice(0, at), input: data.startsWith('@') ? file(data.slice(1), a) : hex(data, a) });
        break;
      }
      case '--config-hex': opts.config = hex(value(), a); break;
      case '--config': case '--config-file': opts.config = file(value(), a); break;
      case '--timeout-ms': opts.limits.timeoutMs = integer(value(), a); break;
      case '--max-memory': opts.limits.maxMemory = integer(value(), a); break;
      case '--max-output': opts.limits.maxOutput = integer(value(), a); break;
      case '--fuel': opts.limits.fuel = integer(value(), a); break;
      case '--allow-clock': opts.allow.add('clock'); break;
      case '--allow-random': opts.allow.add('random'); break;
      case '--env': {
        const v = value();
        const at = v.indexOf('=');
        if (at <= 0) usage(`--env needs NAME=VALUE, not ${JSON.stringify(v)}`);
        const name = v.slice(0, at);
        opts.allow.add(`env:${name}`);
        opts.env[name] = v.slice(at + 1);
        break;
      }
      case '--dir': opts.dirs.push(dir(value())); break;
      case '--max-request': opts.limits.maxRequest = hostCallCap(value(), a); break;
      case '--max-reply': opts.limits.maxReply = hostCallCap(value(), a); break;
      case '--host-calls': opts.hostCallsPath = value(); opts.hostCalls = hostCallTable(opts.hostCallsPath); break;
      case '--abi': {
        // CALL-9: the version the host offers, one it implements.
        const v = value();
        if (!ABI_VERSIONS.includes(v)) usage(`--abi: this host offers ABI ${ABI_VERSIONS.join(' or ')}, not ${JSON.stringify(v)}`);
        opts.abi = v;
        break;
      }
      case '--format': if (value() !== 'json') usage('only --format json is supported'); break;
      default:
        if (a.startsWith('--')) usage(`unknown option ${a}`);
        positional.push(a);
    }
  }
  if (positional.length !== 2) usage('expected PLUGIN and FUNCTION');
  opts.plugin = positional[0];
  opts.calls.unshift({ fn: positional[1], input: opts.input });
  return opts;
}

