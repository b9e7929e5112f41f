// The plugin of the per-call benches (calls.js here, and the browsers'
// hosts/web/bench/calls.js), assembled here: Node has no WebAssembly text
// compiler.

import { u32, s32, str, vec, section } from '../test/helpers.js';

const body = (code) => [...u32(code.length + 2), 0, ...code, 0x0b]; // no locals
const I32 = 0x7f;
const i32 = (v) => [0x41, ...s32(v)];
const localGet = (i) => [0x20, ...u32(i)];
const call = (f) => [0x10, ...u32(f)];
const DROP = 0x1a;
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

// fixtures/good/core.wat, instruction for instruction: `echo` reads its
// input to 1024 and writes it back as output; `count` outputs the length.
export function echoPlugin() {
  const meta = '{"abi":"1.0","name":"core-fixture","version":"1.0.0","profile":"core","functions":[{"name":"echo","summary":"returns its input","deterministic":true},{"name":"count","summary":"input length, u32 LE","output":"application/octet-stream","deterministic":true}],"capabilities":[]}';
  const [inputRead, outputWrite, errorWrite, fits] = [0, 1, 2, 3];
  const fitsCode = [
    ...localGet(0), 0x3f, 0x00, ...i32(65536), 0x6c, ...i32(1024), 0x6b, 0x4d, // len <= memory.size * 65536 - 1024
  ];
  const echoCode = [
    ...localGet(0), ...call(fits), 0x45, 0x04, 0x40, // if (!fits(len))
    ...i32(16), ...i32(15), ...call(errorWrite), DROP, ...i32(4), 0x0f, 0x0b, // error_write("input too large"); return 4
    ...i32(1024), ...i32(0), ...localGet(0), ...call(inputRead), DROP,
    ...i32(1024), ...localGet(0), ...call(outputWrite), DROP,
    ...i32(0),
  ];
  const countCode = [
    ...i32(0), ...localGet(0), 0x36, 0x02, 0x00,
    ...i32(0), ...i32(4), ...call(outputWrite), DROP, ...i32(0),
  ];
  return new Uint8Array([
    ...HEADER,
    ...section(1, vec([[0x60, 3, I32, I32, I32, 1, I32], [0x60, 2, I32, I32, 1, I32], [0x60, 1, I32, 1, I32]])),
    ...section(2, vec([
      [...str('pabi'), ...str('input_read'), 0x00, 0],
      [...str('pabi'), ...str('output_write'), 0x00, 1],
      [...str('pabi'), ...str('error_write'), 0x00, 1],
    ])),
    ...section(3, vec([[2], [2], [2]])),
    ...section(5, vec([[0x00, 2]])),
    ...section(7, vec([
      [...str('memory'), 0x02, 0],
      [...str('pabi_fn_echo'), 0x00, 4],
      [...str('pabi_fn_count'), 0x00, 5],
    ])),
    ...section(10, vec([body(fitsCode), body(echoCode), body(countCode)])),
    ...section(11, vec([[0x00, ...i32(16), 0x0b, ...str('input too large')]])),
    ...section(0, [...str('pabi'), ...Buffer.from(meta)]),
  ]);
}

