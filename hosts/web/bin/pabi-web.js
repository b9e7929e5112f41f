#!/usr/bin/env node
// The host conformance adapter (spec/host-guide.md, "The adapter command")
// of the browser host: the same arguments as hosts/node/bin/pabi-node.js,
// after two of its own,
//
//   pabi-web --driver URL --browser chromium|firefox PLUGIN.wasm FUNCTION ... --format json
//
// It reads the arguments and the files here, in Node, hands the case to a
// page of the browser kept running by the driver (../driver/driver.js, whose
// first line gives URL), and prints the result lines the page gives back;
// the plugin's log goes to standard error. Exits 0 whenever the case ran,
// 2 on bad arguments, 1 when the driver or the page failed.

import fs from 'node:fs';
import { readPluginFile } from '../../node/src/file.js';
import { PabiError } from '../../shared/errors.js';
import { DEFAULT_LIMITS, Oversized } from '../../shared/options.js';
import { parseArgs, usage } from '../../node/src/adapter-args.js';
import { failure } from '../../shared/result.js';
import { tableFunctions } from '../../shared/table.js';


// Above the driver's own bound for a case (50 s), below the runner's 60 s.
const REQUEST_MS = 55000;

function fail(message) {
  process.stderr.write(`pabi-web: ${message}\n`);
  process.exit(1);
}

// Bytes for the page: base64, or only the length of bytes past what the
// ABI can address (LIM-13 refuses them by length).
function wire(bytes) {
  return bytes instanceof Oversized ? { oversized: bytes.length } : { b64: Buffer.from(bytes).toString('base64') };
}

function own(argv) {
  let driver = null;
  let browser = null;
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--driver') driver = argv[++i];
    else if (argv[i] === '--browser') browser = argv[++i];
    else rest.push(argv[i]);
  }
  return { driver, browser, rest };
}

async function main() {
  const { driver, browser, rest } = own(process.argv.slice(2));
  const opts = parseArgs(rest, 'pabi-web', '--driver URL --browser chromium|firefox');
  if (!driver) usage('--driver URL is needed: the line the driver (hosts/web/driver/driver.js) printed');
  if (browser !== 'chromium' && browser !== 'firefox') usage('--browser chromium or --browser firefox is needed');
  let bytes;
  try {
    // As Node's adapter: a file past the compile budget is not read, and
    // its size alone is the MODULE_LIMIT the load would report (LIM-12).
    bytes = readPluginFile(opts.plugin, opts.limits.maxModuleSize ?? DEFAULT_LIMITS.maxModuleSize);
  } catch (e) {
    if (e instanceof PabiError) {
      process.stdout.write(`${JSON.stringify(failure(e))}\n`);
      return;
    }
    usage(`cannot read ${opts.plugin}: ${e.message}`);
  }
  let hostCallsText = null;
  if (opts.hostCallsPath) {
    hostCallsText = fs.readFileSync(opts.hostCallsPath, 'utf8');
    // A name the schema allows but no host may offer (CALL-2: `pabi.`)
    // is a bad argument, found here as Node's adapter finds it.
    try {
      tableFunctions(opts.hostCalls);
    } catch (e) {
      if (e instanceof TypeError) usage(`--host-calls: ${e.message}`);
      throw e;
    }
  }
  const c = {
    plugin: wire(bytes),
    calls: opts.calls.map((call) => ({ fn: call.fn, input: wire(call.input) })),
    config: wire(opts.config),
    limits: opts.limits,
    allow: [...opts.allow],
    env: opts.env,
    dirs: opts.dirs,
    hostCallsText,
    abi: opts.abi,
  };
  let answer;
  try {
    const res = await fetch(new URL(`case?browser=${browser}`, driver), {
      method: 'POST', body: JSON.stringify(c), signal: AbortSignal.timeout(REQUEST_MS),
    });
    if (!res.ok) fail(`the driver at ${driver} answered HTTP ${res.status}: ${await res.text()}`);
    answer = await res.json();
  } catch (e) {
    fail(`the driver at ${driver} did not answer: ${e.message}`);
  }
  for (const line of answer.log) process.stderr.write(`${line}\n`);
  for (const line of answer.lines) process.stdout.write(`${JSON.stringify(line)}\n`);
  if (answer.internal) fail(`internal error in the ${browser} page: ${answer.internal}`);
}

main().catch((e) => fail(`internal error: ${e && e.stack ? e.stack : e}`));
