// @ts-check
// Reading a plugin from a file within the compile budget (LIM-12). A
// module past maxModuleSize is MODULE_LIMIT whatever its bytes, so they are
// not read: the open file's size decides first, and a file that grows
// after that, or a pipe, is read only up to one byte past the cap.

import fs from 'node:fs';
import { COMPILE_BUDGET, moduleSizeLimit } from '../../shared/check.js';

const CHUNK = 1 << 20;

/**
 * The bytes of the plugin at `path`, or a PabiError MODULE_LIMIT when it
 * is larger than `maxModuleSize` bytes. A file that cannot be opened or
 * read throws the file system's error.
 * @param {string} path
 * @param {number} [maxModuleSize] default: the spec's 32 MiB
 * @returns {Uint8Array}
 */
export function readPluginFile(path, maxModuleSize = COMPILE_BUDGET.maxModuleSize) {
  const fd = fs.openSync(path, 'r');
  try {
    const stat = fs.fstatSync(fd);
    if (stat.isFile() && stat.size > maxModuleSize) throw moduleSizeLimit(stat.size, maxModuleSize);
    const chunks = [];
    let total = 0;
    for (;;) {
      // At most one byte past the cap in all.
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK, maxModuleSize + 1 - total));
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > maxModuleSize) {
        // Grown since the fstat, or a pipe: its size now, if it has one.
        throw moduleSizeLimit(Math.max(total, fs.fstatSync(fd).size), maxModuleSize);
      }
    }
    return new Uint8Array(Buffer.concat(chunks, total));
  } finally {
    fs.closeSync(fd);
  }
}
