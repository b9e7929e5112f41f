import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

// The clause IDs this host prints (a result line's `clause`, the words of
// its messages) are the string literals of its sources. Each must land on a
// clause of spec/abi.md, whose anchor is the ID in lower case
// (`<a id="mem-3"></a>**[MEM-3]**`), so that `spec/abi.md#mem-3` finds it.
const spec = fs.readFileSync(new URL('../../../spec/abi.md', import.meta.url), 'utf8');
// The host's sources: Node's platform layer, the shared core, and the
// browser's platform layer.
const sources = ['../src/', '../../shared/', '../../web/src/'].map((dir) => new URL(dir, import.meta.url));

/** Every anchor of the spec, with how often it occurs. */
function anchors(text) {
  const count = new Map();
  for (const [, id] of text.matchAll(/<a id="([^"]*)"><\/a>/g)) count.set(id, (count.get(id) ?? 0) + 1);
  return count;
}

// The areas of the spec (MEM, CALL, ...), from its own definitions, so that
// `UTF-8` or `SHA-256` in a message is not taken for a clause.
const AREAS = new Set([...spec.matchAll(/\*\*\[([A-Z]+)-[0-9]+\]\*\*/g)].map(([, area]) => area));

/** The clause IDs that stand in string literals of a source text. */
function printedIds(text) {
  const ids = new Set();
  for (const [literal] of text.matchAll(/'[^'\n]*'|"[^"\n]*"|`[^`]*`/g)) {
    for (const [id, area] of literal.matchAll(/\b([A-Z]+)-[0-9]+\b/g)) if (AREAS.has(area)) ids.add(id);
  }
  return ids;
}

test('every clause ID this host prints lands on exactly one anchor of spec/abi.md', () => {
  const found = anchors(spec);
  const printed = new Set();
  for (const src of sources.filter((dir) => fs.existsSync(dir))) {
    for (const name of fs.readdirSync(src).filter((n) => n.endsWith('.js'))) {
      for (const id of printedIds(fs.readFileSync(new URL(name, src), 'utf8'))) printed.add(id);
    }
  }
  assert.ok(printed.size >= 30, `only ${printed.size} clause IDs found in the sources`);
  for (const id of printed) {
    assert.equal(found.get(id.toLowerCase()), 1, `${id}: spec/abi.md has ${found.get(id.toLowerCase()) ?? 0} anchors "${id.toLowerCase()}"`);
    assert.ok(spec.includes(`<a id="${id.toLowerCase()}"></a>**[${id}]**`), `${id} is not defined at its anchor`);
  }
});

test('the scan finds IDs in literals only, and the anchor count sees a missing or doubled anchor', () => {
  assert.deepEqual([...printedIds("throw invalid('MEM-3', `see HOST-2, not UTF-8`); // LIFE-5\n")], ['MEM-3', 'HOST-2']);
  const twice = anchors('<a id="mem-3"></a>**[MEM-3]** <a id="mem-3"></a>');
  assert.equal(twice.get('mem-3'), 2);
  assert.equal(anchors('- **[MEM-4]** no anchor').get('mem-4'), undefined);
});
