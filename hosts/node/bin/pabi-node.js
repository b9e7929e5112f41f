#!/usr/bin/env node
// The host conformance adapter (spec/host-guide.md, "The adapter command"):
//
//   pabi-node PLUGIN.wasm FUNCTION (--input-hex HEX | --input FILE)
//     [--then FUNCTION:HEX | --then FUNCTION:@FILE]...
//     [--config-hex HEX | --config FILE] [--timeout-ms N] [--max-memory BYTES]
//     [--max-output BYTES] [--fuel N] --format json
//
// Prints one JSON line per call on standard output; exits 0 whenever it ran
// the case, 2 on bad arguments, 1 on an internal error.

import fs from 'node:fs';
import { loadPlugin, Oversized, escapeText } from '../src/index.js';
import { failure, success } from '../src/result.js';

function usage(message) {
  process.stderr.write(`pabi-node: ${message}\n`);
  process.stderr.write('usage: pabi-node PLUGIN.wasm FUNCTION --input-hex HEX [--then FUNCTION:HEX]... [--config-hex HEX] [--timeout-ms N] [--max-memory BYTES] [--max-output BYTES] [--fuel N] --format json\n');
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

function parseArgs(argv) {
  const positional = [];
  const opts = { calls: [], config: new Uint8Array(0), limits: {}, input: new Uint8Array(0) };
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
    bytes = fs.readFileSync(opts.plugin);
  } catch (e) {
    process.stderr.write(`pabi-node: cannot read ${opts.plugin}: ${e.message}\n`);
    process.exit(1);
  }
  let plugin;
  try {
    plugin = loadPlugin(bytes, {
      config: opts.config,
      limits: opts.limits,
      allow: [], // no capability is allowed (host-guide, adapter step 1)
      // SEC-3: plugin text is escaped before it reaches a terminal.
      onLog: (level, text) => process.stderr.write(`log ${level}: ${escapeText(text)}\n`),
    });
  } catch (e) {
    print(failure(e));
    return;
  }
  for (const call of opts.calls) {
    try {
      let output;
      if (call.fn === '@save') output = plugin.saveState();
      else if (call.fn === '@load') { plugin.loadState(call.input); output = new Uint8Array(0); }
      else output = plugin.call(call.fn, call.input);
      print(success(output));
    } catch (e) {
      print(failure(e));
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
