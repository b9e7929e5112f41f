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

import { loadPlugin, readPluginFile, escapeText, PabiError, KINDS, DEFAULT_LIMITS } from '../src/index.js';
import { failure, success } from '../../shared/result.js';
import { adapterTable } from '../../shared/table.js';
import { parseArgs, usage } from '../src/adapter-args.js';

function print(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function main() {
  const opts = parseArgs(process.argv.slice(2), 'pabi-node');
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
  let table;
  try {
    table = adapterTable(opts.hostCalls ?? null);
  } catch (e) {
    // A name the schema allows but no host may offer (CALL-2: `pabi.`).
    if (e instanceof TypeError) usage(`--host-calls: ${e.message}`);
    throw e;
  }
  const take = () => table.take();
  let plugin;
  try {
    plugin = loadPlugin(bytes, {
      hostFunctions: table.functions,
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
  table.serve(plugin);
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
