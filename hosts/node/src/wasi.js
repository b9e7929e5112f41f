// The `wasi_snapshot_preview1` baseline of WASI-2, served by the host itself
// rather than by `node:wasi`: node:wasi always exposes the real clocks and
// real entropy, while WASI-6 and WASI-7 require a virtual clock and a
// fixed-seed generator when the plugin has no `clock` or `random`
// capability. No file system is offered: this host never allows `fs:`
// capabilities, so the WASI-4 file-system functions are never linked.

const ERRNO = { SUCCESS: 0, BADF: 8, FAULT: 21, INVAL: 28, NOSYS: 52, SPIPE: 70, NOTCAPABLE: 76 };

// proc_exit ends the call as a trap of kind `other` (ERR-9); the worker
// classifies it like a trap, not as an error of the host.
export class Exit {
  constructor(code) {
    this.kind = 'TRAP';
    this.trap = 'other';
    this.detail = `other: the plugin called proc_exit(${code})`;
  }
}

// Where the virtual clock starts (WASI-6), in nanoseconds.
export const VIRTUAL_ORIGIN_NS = 1000000000n;

export function makeWasi({ memory, capabilities, env = {}, log, entropy }) {
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
  const pending = { 1: [], 2: [] };

  const mem = () => memory();
  const inside = (ptr, len) => (ptr >>> 0) + (len >>> 0) <= mem().buffer.byteLength;
  const dv = () => new DataView(mem().buffer);
  const u8 = () => new Uint8Array(mem().buffer);
  // Each function checks its pointers and answers `fault` (21) for a range
  // outside memory, as WASI defines, instead of aborting the call.
  const guard = (fn) => (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof RangeError && /offset|bounds|Offset/.test(e.message)) return ERRNO.FAULT;
      throw e;
    }
  };

  const now = (id) => {
    if (caps.has('clock')) {
      if (id === 0) return BigInt(Date.now()) * 1000000n;
      return process.hrtime.bigint();
    }
    return virtualNs;
  };

  const flushStd = (fd, final) => {
    const parts = pending[fd];
    if (!parts.length) return;
    const all = Buffer.concat(parts);
    let start = 0;
    for (let i = 0; i < all.length; i++) {
      if (all[i] === 10) {
        log(fd === 1 ? 2 : 1, all.subarray(start, i));
        start = i + 1;
      }
    }
    const rest = all.subarray(start);
    pending[fd] = rest.length && !final ? [Buffer.from(rest)] : [];
    if (rest.length && final) log(fd === 1 ? 2 : 1, rest);
  };

  const imports = {
    args_get: guard(() => ERRNO.SUCCESS),
    args_sizes_get: guard((argc, size) => {
      if (!inside(argc, 4) || !inside(size, 4)) return ERRNO.FAULT;
      dv().setUint32(argc, 0, true);
      dv().setUint32(size, 0, true);
      return ERRNO.SUCCESS;
    }),
    environ_get: guard((environ, buf) => {
      let at = buf >>> 0;
      let total = 0;
      for (const p of envPairs) total += p.length;
      if (!inside(environ, envPairs.length * 4) || !inside(buf, total)) return ERRNO.FAULT;
      envPairs.forEach((p, i) => {
        dv().setUint32((environ >>> 0) + i * 4, at, true);
        u8().set(p, at);
        at += p.length;
      });
      return ERRNO.SUCCESS;
    }),
    environ_sizes_get: guard((count, size) => {
      if (!inside(count, 4) || !inside(size, 4)) return ERRNO.FAULT;
      dv().setUint32(count, envPairs.length, true);
      dv().setUint32(size, envPairs.reduce((n, p) => n + p.length, 0), true);
      return ERRNO.SUCCESS;
    }),
    clock_res_get: guard((id, res) => {
      if (id >>> 0 > 3) return ERRNO.INVAL;
      if (!inside(res, 8)) return ERRNO.FAULT;
      dv().setBigUint64(res, 1n, true);
      return ERRNO.SUCCESS;
    }),
    clock_time_get: guard((id, _precision, time) => {
      if (id >>> 0 > 3) return ERRNO.INVAL;
      if (!inside(time, 8)) return ERRNO.FAULT;
      dv().setBigUint64(time >>> 0, now(id >>> 0), true);
      return ERRNO.SUCCESS;
    }),
    random_get: guard((buf, len) => {
      buf >>>= 0; len >>>= 0;
      if (!inside(buf, len)) return ERRNO.FAULT;
      const view = new Uint8Array(mem().buffer, buf, len);
      if (caps.has('random')) {
        entropy(view);
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
    }),
    poll_oneoff: guard((inPtr, outPtr, nsubs, neventsPtr) => {
      inPtr >>>= 0; outPtr >>>= 0; nsubs >>>= 0;
      if (nsubs === 0) return ERRNO.INVAL;
      if (!inside(inPtr, nsubs * 48) || !inside(outPtr, nsubs * 32) || !inside(neventsPtr, 4)) return ERRNO.FAULT;
      const d = dv();
      const events = [];
      let soonest = null;
      for (let i = 0; i < nsubs; i++) {
        const at = inPtr + i * 48;
        const userdata = d.getBigUint64(at, true);
        const tag = d.getUint8(at + 8);
        if (tag === 0) {
          const id = d.getUint32(at + 16, true);
          const timeout = d.getBigUint64(at + 24, true);
          const flags = d.getUint16(at + 40, true);
          const deadline = flags & 1 ? timeout : now(id) + timeout;
          if (soonest === null || deadline < soonest.deadline) soonest = { userdata, deadline, id, relative: !(flags & 1), timeout };
        } else {
          // stdin is empty and stdout/stderr always writable: ready at once.
          events.push({ userdata, type: tag, error: tag === 1 || tag === 2 ? 0 : ERRNO.INVAL });
        }
      }
      if (!events.length && soonest) {
        if (caps.has('clock')) {
          const wait = soonest.deadline - now(soonest.id);
          if (wait > 0n) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(wait / 1000000n));
        } else if (soonest.relative) {
          virtualNs += soonest.timeout;
        } else if (soonest.deadline > virtualNs) {
          virtualNs = soonest.deadline;
        }
        events.push({ userdata: soonest.userdata, type: 0, error: 0 });
      }
      events.forEach((e, i) => {
        const at = outPtr + i * 32;
        new Uint8Array(mem().buffer, at, 32).fill(0);
        d.setBigUint64(at, e.userdata, true);
        d.setUint16(at + 8, e.error, true);
        d.setUint8(at + 10, e.type);
      });
      d.setUint32(neventsPtr >>> 0, events.length, true);
      return ERRNO.SUCCESS;
    }),
    sched_yield: () => ERRNO.SUCCESS,
    proc_exit: (code) => { throw new Exit(code >>> 0); },
    proc_raise: () => ERRNO.NOSYS,
    fd_write: guard((fd, iovs, iovsLen, nwritten) => {
      iovs >>>= 0; iovsLen >>>= 0;
      if (fd !== 1 && fd !== 2) return ERRNO.BADF;
      if (!inside(iovs, iovsLen * 8) || !inside(nwritten, 4)) return ERRNO.FAULT;
      const d = dv();
      let n = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = d.getUint32(iovs + i * 8, true);
        const len = d.getUint32(iovs + i * 8 + 4, true);
        if (!inside(ptr, len)) return ERRNO.FAULT;
        pending[fd].push(Buffer.from(new Uint8Array(mem().buffer, ptr, len)));
        n += len;
      }
      flushStd(fd, false);
      d.setUint32(nwritten >>> 0, n, true);
      return ERRNO.SUCCESS;
    }),
    fd_read: guard((fd, _iovs, _len, nread) => {
      if (fd !== 0) return ERRNO.BADF;
      if (!inside(nread, 4)) return ERRNO.FAULT;
      dv().setUint32(nread >>> 0, 0, true);
      return ERRNO.SUCCESS;
    }),
    fd_close: (fd) => (fd >>> 0 <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_seek: (fd) => (fd >>> 0 <= 2 ? ERRNO.SPIPE : ERRNO.BADF),
    fd_tell: (fd) => (fd >>> 0 <= 2 ? ERRNO.SPIPE : ERRNO.BADF),
    fd_sync: (fd) => (fd >>> 0 <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_datasync: (fd) => (fd >>> 0 <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_advise: (fd) => (fd >>> 0 <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_allocate: (fd) => (fd >>> 0 <= 2 ? ERRNO.INVAL : ERRNO.BADF),
    fd_fdstat_get: guard((fd, ptr) => {
      if (fd >>> 0 > 2) return ERRNO.BADF;
      if (!inside(ptr, 24)) return ERRNO.FAULT;
      const d = dv();
      new Uint8Array(mem().buffer, ptr >>> 0, 24).fill(0);
      d.setUint8(ptr >>> 0, 2); // character device
      d.setBigUint64((ptr >>> 0) + 8, fd === 0 ? 0x2n : 0x40n, true); // fd_read / fd_write
      return ERRNO.SUCCESS;
    }),
    fd_fdstat_set_flags: (fd) => (fd >>> 0 <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_fdstat_set_rights: (fd) => (fd >>> 0 <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_filestat_get: guard((fd, ptr) => {
      if (fd >>> 0 > 2) return ERRNO.BADF;
      if (!inside(ptr, 64)) return ERRNO.FAULT;
      new Uint8Array(mem().buffer, ptr >>> 0, 64).fill(0);
      dv().setUint8((ptr >>> 0) + 16, 2);
      return ERRNO.SUCCESS;
    }),
    fd_prestat_get: () => ERRNO.BADF,
    fd_prestat_dir_name: () => ERRNO.BADF,
  };
  return { imports, flush: () => { flushStd(1, true); flushStd(2, true); } };
}
