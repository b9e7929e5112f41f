// The `wasi_snapshot_preview1` baseline of WASI-2, served by the host itself
// rather than by `node:wasi` (nor a browser's shim): node:wasi always
// exposes the real clocks and real entropy, while WASI-6 and WASI-7 require a virtual clock and a
// fixed-seed generator when the plugin has no `clock` or `random`
// capability. No file system is offered: this host never allows `fs:`
// capabilities, so the WASI-4 file-system functions (path_symlink among
// them, WASI-10) are never linked; a plugin that imports one declares an
// `fs:` capability and is refused with MISSING_CAPABILITY.

import { Abort } from './abort.js';
import { KINDS } from './errors.js';

const ERRNO = { SUCCESS: 0, BADF: 8, INVAL: 28, NOSYS: 52, SPIPE: 70 };

// proc_exit ends the call as a trap of kind `other` (ERR-9, WASI-10), or as
// MEMORY_LIMIT after a refused growth (LIM-2); the worker classifies it
// like a trap, not as an error of the host.
export class Exit {
  constructor(code) {
    this.code = code;
    this.kind = KINDS.TRAP;
    this.trap = 'other';
    this.detail = `other: the plugin called proc_exit(${code})`;
  }
}

// The monotonic clock of any platform: performance.now(), in nanoseconds.
// A browser coarsens it (to a few microseconds in a cross-origin isolated
// page); Node's platform layer passes process.hrtime instead.
const performanceNs = () => BigInt(Math.round(performance.now() * 1e6));

// Where the virtual clock starts (WASI-6), in nanoseconds.
export const VIRTUAL_ORIGIN_NS = 1000000000n;

// Sizes and alignments of the witx types the functions point to. WASI's
// rule (MEM-3) is that a pointer outside memory, or not aligned for its
// type, traps; this host aborts the call with ABI_VIOLATION instead of
// answering errno `fault`.
const U32 = [4, 4]; // u32, size
const U64 = [8, 8]; // timestamp, filesize
const IOVEC = [8, 4]; // iovec, ciovec
const SUBSCRIPTION = [48, 8];
const EVENT = [32, 8];
const FDSTAT = [24, 8];
const FILESTAT = [64, 8];

/**
 * memory()        the instance's memory
 * capabilities    the granted capabilities (WASI-5)
 * env             values for `env:NAME`
 * write(fd, view) standard output (1) or error (2): the worker counts it
 *                 against the log cap and splits it into records (WASI-8,
 *                 LIM-11); `view` is only valid during the call
 * entropy(view)   fills with OS entropy (`random`)
 * monotonicNs()   the platform's monotonic clock, in nanoseconds (a BigInt);
 *                 by default performance.now(), which both platforms have
 * resolutionNs()  the resolution of the real clocks, in nanoseconds (a
 *                 BigInt): 1 by default; a browser coarsens its clocks
 */
export function makeWasi({ memory, capabilities, env = {}, write, entropy, monotonicNs = performanceNs, resolutionNs = () => 1n }) {
  const caps = new Set(capabilities);
  let virtualNs = VIRTUAL_ORIGIN_NS;
  // xorshift128+ with a fixed seed (WASI-7): the same bytes for every fresh instance.
  let s0 = 0x9e3779b97f4a7c15n;
  let s1 = 0xbf58476d1ce4e5b9n;
  const MASK = 0xffffffffffffffffn;
  const next = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x = (x ^ (x << 23n)) & MASK;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return (s1 + y) & MASK;
  };
  const envPairs = [];
  for (const c of caps) {
    if (c.startsWith('env:')) {
      const name = c.slice(4);
      if (Object.hasOwn(env, name)) envPairs.push(new TextEncoder().encode(`${name}=${env[name]}\0`));
    }
  }

  // The descriptors open in this instance: stdin, stdout and stderr until
  // the plugin closes one (WASI-8). A closed one is `badf` from then on, as
  // in WASI; a fresh instance has all three again.
  const open = new Set([0, 1, 2]);
  const isOpen = (fd) => open.has(fd >>> 0);

  const buffer = () => memory().buffer;
  const dv = () => new DataView(buffer());

  // MEM-3: `count` values of type [size, align] at `ptr` must lie inside
  // memory and `ptr` must be aligned, or the call is aborted before any
  // byte is read or written. The sum is computed in doubles, which hold
  // every u32 + u32 * size exactly, so it cannot wrap (MEM-4).
  const need = (fn, ptr, [size, align], count = 1) => {
    const memSize = buffer().byteLength;
    const end = ptr + size * count;
    let why = null;
    if (ptr % align !== 0) why = `is not aligned to ${align} bytes`;
    else if (end > memSize) why = `and ${size * count} bytes end at ${end}, past the memory size ${memSize}`;
    if (why) {
      throw new Abort(KINDS.ABI_VIOLATION, {
        clause: 'MEM-3',
        detail: `[MEM-3] wasi_snapshot_preview1.${fn}: pointer ${ptr} ${why}`,
      });
    }
  };
  const bytes = (fn, ptr, len) => need(fn, ptr, [1, 1], len);

  const now = (id) => {
    if (caps.has('clock')) {
      if (id === 0) return BigInt(Date.now()) * 1000000n;
      return monotonicNs(); // WASI-9: ids 1-3 read the monotonic clock
    }
    return virtualNs; // WASI-9: every id reads the virtual clock
  };

  const imports = {
    args_get: (argv, buf) => {
      argv >>>= 0; buf >>>= 0;
      need('args_get', argv, U32, 0); // no arguments (WASI-8)
      bytes('args_get', buf, 0);
      return ERRNO.SUCCESS;
    },
    args_sizes_get: (argc, size) => {
      argc >>>= 0; size >>>= 0;
      need('args_sizes_get', argc, U32);
      need('args_sizes_get', size, U32);
      dv().setUint32(argc, 0, true);
      dv().setUint32(size, 0, true);
      return ERRNO.SUCCESS;
    },
    environ_get: (environ, buf) => {
      environ >>>= 0; buf >>>= 0;
      const total = envPairs.reduce((n, p) => n + p.length, 0);
      need('environ_get', environ, U32, envPairs.length);
      bytes('environ_get', buf, total);
      let at = buf;
      envPairs.forEach((p, i) => {
        dv().setUint32(environ + i * 4, at, true);
        new Uint8Array(buffer()).set(p, at);
        at += p.length;
      });
      return ERRNO.SUCCESS;
    },
    environ_sizes_get: (count, size) => {
      count >>>= 0; size >>>= 0;
      need('environ_sizes_get', count, U32);
      need('environ_sizes_get', size, U32);
      dv().setUint32(count, envPairs.length, true);
      dv().setUint32(size, envPairs.reduce((n, p) => n + p.length, 0), true);
      return ERRNO.SUCCESS;
    },
    // WASI-9: ids 0-3 are valid, others are `inval`. The id is checked first,
    // as WASI writes the result only when there is one.
    clock_res_get: (id, res) => {
      id >>>= 0; res >>>= 0;
      if (id > 3) return ERRNO.INVAL;
      need('clock_res_get', res, U64);
      // WASI-9: 1 on the virtual clock; the real clocks' own resolution.
      dv().setBigUint64(res, caps.has('clock') ? resolutionNs() : 1n, true);
      return ERRNO.SUCCESS;
    },
    clock_time_get: (id, _precision, time) => {
      id >>>= 0; time >>>= 0;
      if (id > 3) return ERRNO.INVAL;
      need('clock_time_get', time, U64);
      dv().setBigUint64(time, now(id), true);
      return ERRNO.SUCCESS;
    },
    random_get: (buf, len) => {
      buf >>>= 0; len >>>= 0;
      bytes('random_get', buf, len);
      const view = new Uint8Array(buffer(), buf, len);
      if (caps.has('random')) {
        // crypto.randomFillSync takes at most 2^31 - 1 bytes at once.
        for (let at = 0; at < len; at += 1 << 30) entropy(view.subarray(at, Math.min(len, at + (1 << 30))));
        return ERRNO.SUCCESS;
      }
      for (let i = 0; i < len; i += 8) {
        let v = next();
        for (let j = 0; j < 8 && i + j < len; j++) {
          view[i + j] = Number(v & 0xffn);
          v >>= 8n;
        }
      }
      return ERRNO.SUCCESS;
    },
    // WASI-9: one event for every subscription that is ready when it returns.
    poll_oneoff: (inPtr, outPtr, nsubs, neventsPtr) => {
      inPtr >>>= 0; outPtr >>>= 0; nsubs >>>= 0; neventsPtr >>>= 0;
      if (nsubs === 0) return ERRNO.INVAL;
      need('poll_oneoff', inPtr, SUBSCRIPTION, nsubs);
      need('poll_oneoff', outPtr, EVENT, nsubs);
      need('poll_oneoff', neventsPtr, U32);
      const d = dv();
      const events = [];
      const clocks = [];
      for (let i = 0; i < nsubs; i++) {
        const at = inPtr + i * 48;
        const userdata = d.getBigUint64(at, true);
        const tag = d.getUint8(at + 8);
        if (tag === 0) {
          const id = d.getUint32(at + 16, true);
          if (id > 3) { events.push({ i, userdata, type: 0, error: ERRNO.INVAL }); continue; }
          const timeout = d.getBigUint64(at + 24, true);
          const absolute = (d.getUint16(at + 40, true) & 1) === 1;
          clocks.push({ i, userdata, id, deadline: absolute ? timeout : now(id) + timeout });
        } else if (tag === 1 || tag === 2) {
          // stdin is empty (at its end) and stdout/stderr always take
          // writes: a subscription on fds 0-2 is ready at once.
          const fd = d.getUint32(at + 16, true);
          events.push({ i, userdata, type: tag, error: isOpen(fd) ? ERRNO.SUCCESS : ERRNO.BADF });
        } else {
          events.push({ i, userdata, type: tag, error: ERRNO.INVAL });
        }
      }
      if (clocks.length) {
        let earliest = clocks[0];
        for (const c of clocks) if (c.deadline - now(c.id) < earliest.deadline - now(earliest.id)) earliest = c;
        // Nothing else is ready: wait for the earliest timer, on the real
        // clock or by moving the virtual one (WASI-6). The worker is
        // terminated at the call's deadline, which bounds a real sleep (LIM-3).
        if (!events.length) {
          if (caps.has('clock')) {
            const wait = earliest.deadline - now(earliest.id);
            if (wait > 0n) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number((wait + 999999n) / 1000000n));
          } else if (earliest.deadline > virtualNs) {
            virtualNs = earliest.deadline;
          }
        }
        for (const c of clocks) {
          const due = c.deadline <= now(c.id) || (c === earliest && !events.length);
          if (due) events.push({ i: c.i, userdata: c.userdata, type: 0, error: ERRNO.SUCCESS });
        }
      }
      events.sort((a, b) => a.i - b.i);
      const out = new Uint8Array(buffer(), outPtr, events.length * 32);
      out.fill(0);
      events.forEach((e, k) => {
        const at = outPtr + k * 32;
        d.setBigUint64(at, e.userdata, true);
        d.setUint16(at + 8, e.error, true);
        d.setUint8(at + 10, e.type);
      });
      d.setUint32(neventsPtr, events.length, true);
      return ERRNO.SUCCESS;
    },
    sched_yield: () => ERRNO.SUCCESS,
    proc_exit: (code) => { throw new Exit(code >>> 0); },
    proc_raise: () => ERRNO.NOSYS, // WASI-10: a plugin is not a process
    fd_write: (fd, iovs, iovsLen, nwritten) => {
      iovs >>>= 0; iovsLen >>>= 0; nwritten >>>= 0;
      // MEM-3: the descriptor decides before any pointer is looked at.
      if ((fd !== 1 && fd !== 2) || !isOpen(fd)) return ERRNO.BADF;
      need('fd_write', iovs, IOVEC, iovsLen);
      need('fd_write', nwritten, U32);
      const d = dv();
      // Every buffer is checked before any is written out, so that an
      // aborted call has logged nothing of this write.
      let n = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = d.getUint32(iovs + i * 8, true);
        const len = d.getUint32(iovs + i * 8 + 4, true);
        bytes('fd_write', ptr, len);
        n += len;
      }
      if (n > 0xffffffff) return ERRNO.INVAL; // the count does not fit the u32 result
      for (let i = 0; i < iovsLen; i++) {
        const ptr = d.getUint32(iovs + i * 8, true);
        const len = d.getUint32(iovs + i * 8 + 4, true);
        if (len) write(fd, new Uint8Array(buffer(), ptr, len));
      }
      // LIM-11: bytes past the log cap are dropped, but the write reports
      // them all, so that a language runtime neither retries nor fails.
      d.setUint32(nwritten, n, true);
      return ERRNO.SUCCESS;
    },
    fd_read: (fd, iovs, iovsLen, nread) => {
      iovs >>>= 0; iovsLen >>>= 0; nread >>>= 0;
      if (fd !== 0 || !isOpen(fd)) return ERRNO.BADF;
      need('fd_read', iovs, IOVEC, iovsLen);
      need('fd_read', nread, U32);
      dv().setUint32(nread, 0, true); // stdin is empty (WASI-8)
      return ERRNO.SUCCESS;
    },
    // WASI-8: closing stdin, stdout or stderr closes it for this instance.
    fd_close: (fd) => (open.delete(fd >>> 0) ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_seek: (fd) => (isOpen(fd) ? ERRNO.SPIPE : ERRNO.BADF),
    fd_tell: (fd) => (isOpen(fd) ? ERRNO.SPIPE : ERRNO.BADF),
    fd_sync: (fd) => (isOpen(fd) ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_datasync: (fd) => (isOpen(fd) ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_advise: (fd) => (isOpen(fd) ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_allocate: (fd) => (isOpen(fd) ? ERRNO.INVAL : ERRNO.BADF),
    // WASI-8: stdio is of an unknown file type (filetype 0: the host's log
    // is not a terminal, which a character device would suggest), with no
    // flags, and the rights of its one operation, inherited alike.
    fd_fdstat_get: (fd, ptr) => {
      ptr >>>= 0;
      if (!isOpen(fd)) return ERRNO.BADF;
      need('fd_fdstat_get', ptr, FDSTAT);
      const d = dv();
      const rights = fd === 0 ? 0x2n : 0x40n; // fd_read / fd_write
      new Uint8Array(buffer(), ptr, 24).fill(0);
      d.setBigUint64(ptr + 8, rights, true);
      d.setBigUint64(ptr + 16, rights, true);
      return ERRNO.SUCCESS;
    },
    fd_fdstat_set_flags: (fd) => (isOpen(fd) ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_fdstat_set_rights: (fd) => (isOpen(fd) ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_filestat_get: (fd, ptr) => {
      ptr >>>= 0;
      if (!isOpen(fd)) return ERRNO.BADF;
      need('fd_filestat_get', ptr, FILESTAT);
      new Uint8Array(buffer(), ptr, 64).fill(0);
      dv().setUint8(ptr + 16, 2);
      return ERRNO.SUCCESS;
    },
    // No directory is preopened, so every fd is a bad prestat fd.
    fd_prestat_get: () => ERRNO.BADF,
    fd_prestat_dir_name: () => ERRNO.BADF,
  };
  return { imports };
}
