// The demo page: pick a plugin file, pick one of its functions, type an
// input, and see the output, the error kind and the plugin's log. The
// host-call table is editable: it is the application's side of the
// plugin's host calls, in the format of the conformance adapter's
// `--host-calls` (spec/schemas/host-calls.schema.json). The plugin is
// loaded again whenever the file, the table or the configuration changes.

import { loadPlugin, checkIsolation, PabiError, DESCRIPTIONS } from '../src/index.js';
import { parseHostCallTable, tableFunctions } from '../../shared/table.js';
import { toHex, fromHex } from '../../shared/hex.js';

const $ = (id) => document.getElementById(id);
const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];
let bytes = null;
let plugin = null;
let logLines = [];

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function showResult({ output = null, kind = '', message = '' }) {
  $('output').textContent = output ? new TextDecoder().decode(output) : '';
  $('output-hex').textContent = output ? toHex(output) : '';
  $('kind').textContent = kind;
  $('message').textContent = message;
  $('log').textContent = logLines.join('\n');
}

function showError(e) {
  if (!(e instanceof PabiError)) throw e;
  const message = e.pluginMessage ? new TextDecoder().decode(e.pluginMessage) : e.message;
  showResult({ kind: e.status === undefined ? e.kind : `${e.kind} (status ${e.status})`, message: `${message}\n${DESCRIPTIONS[e.kind] ?? ''}`.trim() });
}

async function load() {
  $('run').disabled = true;
  $('function').disabled = true;
  if (plugin) {
    await plugin.close();
    plugin = null;
  }
  if (!bytes) return;
  let hostFunctions;
  try {
    hostFunctions = tableFunctions(parseHostCallTable($('table').value));
  } catch (e) {
    status(`the host-call table is not valid: ${e.message}`, true);
    return;
  }
  logLines = [];
  status('loading the plugin…');
  try {
    plugin = await loadPlugin(bytes, {
      hostFunctions,
      config: new TextEncoder().encode($('config').value),
      onLog: (level, text) => logLines.push(`${LEVELS[level] ?? level}: ${text}`),
      onHostLog: (text) => logLines.push(`host: ${text}`),
    });
  } catch (e) {
    status('the plugin did not load', true);
    showError(e);
    return;
  }
  const select = $('function');
  select.replaceChildren(...plugin.functions.map((name) => {
    const option = document.createElement('option');
    option.value = name;
    const summary = plugin.metadata.functions?.find((f) => f.name === name)?.summary;
    option.textContent = summary ? `${name}: ${summary}` : name;
    return option;
  }));
  select.disabled = false;
  $('run').disabled = false;
  status(`loaded ${plugin.metadata.name} ${plugin.metadata.version} (ABI ${plugin.metadata.abi}, profile ${plugin.metadata.profile})`);
  showResult({});
}

async function run() {
  if (!plugin) return;
  let input;
  const text = $('input').value;
  if ($('hex').checked) {
    const clean = text.replace(/\s+/g, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(clean)) {
      showResult({ kind: 'bad input', message: 'not hex: an even number of the digits 0-9 and a-f' });
      return;
    }
    input = fromHex(clean);
  } else {
    input = new TextEncoder().encode(text);
  }
  logLines = [];
  $('run').disabled = true;
  try {
    showResult({ output: await plugin.call($('function').value, input) });
  } catch (e) {
    showError(e);
  } finally {
    $('run').disabled = false;
  }
}

try {
  checkIsolation();
  status('pick a plugin file');
} catch (e) {
  status(e.message, true);
}
$('plugin').addEventListener('change', async () => {
  const file = $('plugin').files[0];
  bytes = file ? new Uint8Array(await file.arrayBuffer()) : null;
  await load();
});
$('table').addEventListener('change', load);
$('config').addEventListener('change', load);
$('run').addEventListener('click', run);
