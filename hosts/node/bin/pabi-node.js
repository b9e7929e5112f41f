#!/usr/bin/env node
// The host conformance adapter (spec/host-guide.md, "The adapter command"):
//
//   pabi-node PLUGIN.wasm FUNCTION (--input-hex HEX | --input FILE)
//     [--then FUNCTION:HEX | --then FUNCTION:@FILE]...
//     [--config-hex HEX | --config FILE] [--timeout-ms N] [--max-memory BYTES]
//     [--max-output BYTES] [--fuel N] [--allow-clock] [--allow-random]
//     [--env NAME=VALUE]... [--dir HOST:GUEST[:ro]]...
//     [--max-request BYTES] [--max-reply BYTES] [--host-calls FILE] [--abi VERSION]
//     --format json
//
// Prints one JSON line per call on standard output; exits 0 whenever it ran
// the case, 2 on bad arguments (a plugin file that cannot be read among
// them), 1 on an internal error. A worker thread that has not gone 15 s
// after the last result line ends the process by SIGKILL, with a line on
// standard error that says which (it would otherwise hold it forever).

import fs from 'node:fs';
import { loadPlugin, readPluginFile, Oversized, escapeText, PabiError, KINDS, ABI_VERSIONS, DEFAULT_LIMITS } from '../src/index.js';
import { failure, success } from '../../shared/result.js';
import { parseHostCallTable, tableFunctions, TableError } from '../../shared/table.js';

function usage(message) {
  process.stderr.write(`pabi-node: ${message}\n`);
  process.stderr.write('usage: pabi-node PLUGIN.wasm FUNCTION --input-hex HEX [--then FUNCTION:HEX]... [--config-hex HEX] [--timeout-ms N] [--max-memory BYTES] [--max-output BYTES] [--fuel N] [--allow-clock] [--allow-random] [--env NAME=VALUE]... [--dir HOST:GUEST[:ro]]... [--max-request BYTES] [--max-reply BYTES] [--host-calls FILE] [--abi VERSION] --format json\n');
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

function parseArgs(argv) {
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
      case '--host-calls': opts.hostCalls = hostCallTable(value()); break;
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

function print(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  let bytes;
  try {
    // Past the compile budget the file is not read: its size alone is
    // the MODULE_LIMIT the load would report (LIM-12).
    bytes = readPluginFile(opts.plugin, opts.limits.maxModuleSize ?? DEFAULT_LIMITS.maxModuleSize);
  } catch (e) {
    if (e instanceof PabiError) {
      print(failure(e));
      return null;
    }
    // A path the runner got wrong is a bad argument (2); bytes that are
    // read but are not a plugin are a result, INVALID_MODULE.
    usage(`cannot read ${opts.plugin}: ${e.message}`);
  }
  if (opts.dirs.length) {
    // Host-guide, adapter step 5: this host has no file system, so it
    // cannot grant a directory; it says so rather than run the plugin
    // without it (WASI-5).
    const d = opts.dirs[0];
    print(failure(new PabiError(KINDS.NOT_SUPPORTED, {
      clause: 'WASI-5',
      detail: `[WASI-5] this host has no file system support and cannot grant the folder ${JSON.stringify(d.host)} at ${JSON.stringify(d.guest)}`,
    })));
    return null;
  }
  // Every request the application's handlers receive, in order; each
  // result line takes those of its call (host-guide, "Result lines").
  let received = [];
  const take = () => { const list = received; received = []; return list; };
  // The plugin object, once loaded: a table's `reenter` answers call it
  // back through the host's API, which refuses (CALL-8). While the first
  // load runs pabi_init, the application has no handle on it yet; that
  // instance is as busy, and the call is refused the same way.
  let plugin = null;
  const reenter = (fn, input) => {
    if (!plugin) {
      throw new PabiError(KINDS.HOST_FAILURE, {
        clause: 'CALL-8',
        detail: `[CALL-8] ${fn} was called while the plugin initializes and waits for a host call's handler; a handler must not call into the instance whose host call it serves`,
      });
    }
    return plugin.call(fn, input);
  };
  let hostFunctions = [];
  if (opts.hostCalls) {
    try {
      hostFunctions = tableFunctions(opts.hostCalls, (name, request) => received.push({ name, request }), reenter);
    } catch (e) {
      // A name the schema allows but no host may offer (CALL-2: `pabi.`).
      if (e instanceof TypeError) usage(`--host-calls: ${e.message}`);
      throw e;
    }
  }
  try {
    plugin = loadPlugin(bytes, {
      hostFunctions,
      abi: opts.abi,
      config: opts.config,
      limits: opts.limits,
      // Only the capabilities the grant flags allow (host-guide, adapter
      // step 1); none without them.
      allow: [...opts.allow],
      env: opts.env,
      // SEC-3: plugin text is escaped before it reaches a terminal.
      onLog: (level, text) => process.stderr.write(`log ${level}: ${escapeText(text)}\n`),
    });
  } catch (e) {
    print(failure(e, take()));
    return;
  }
  // Host calls of the first load's pabi_init are reported with the first
  // call, as those of a later re-load are with the call that made it.
  for (const call of opts.calls) {
    try {
      let output;
      if (call.fn === '@save') output = plugin.saveState();
      else if (call.fn === '@load') { plugin.loadState(call.input); output = new Uint8Array(0); }
      else output = plugin.call(call.fn, call.input);
      print(success(output, take()));
    } catch (e) {
      print(failure(e, take()));
    }
  }
  plugin.close();
  return plugin;
}

let plugin;
try {
  plugin = main();
} catch (e) {
  process.stderr.write(`pabi-node: internal error: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
// Every result line is printed. Wait until the workers of timed-out or
// failed instances have stopped, so that none still runs plugin code; the
// process then ends by itself (workers and the monitor thread are
// unref'd), after standard output is flushed: process.exit() here would
// cut a long result line that is still queued for a full pipe.
process.exitCode = 0;
plugin?.closed();
// A terminated worker keeps the process alive until its thread has gone,
// and process.exit() would wait for that too. A thread that has not gone
// well past any plausible teardown would hold the process forever: say so,
// with the state of its channel, and end the process by signal, which the
// runner reports with this text.
const EXIT_BOUND_MS = 15000;
setTimeout(() => {
  process.stderr.write(`pabi-node: a worker thread had not stopped ${EXIT_BOUND_MS} ms after every result was printed (${plugin ? plugin.describeChannels() : 'no plugin'}); ending the process\n`);
  process.kill(process.pid, 'SIGKILL');
}, EXIT_BOUND_MS).unref();
