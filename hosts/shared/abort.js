// An abort of the call from inside a host function (host-guide section 7:
// "abort the call"). Thrown through the wasm frames like a trap; the worker
// reports it under its own kind instead of TRAP. Shared by the `pabi`
// functions (instance.js) and the WASI functions (wasi.js), which abort for
// the same reason (MEM-3).
export class Abort {
  constructor(kind, fields) {
    this.kind = kind;
    Object.assign(this, fields);
  }
}
