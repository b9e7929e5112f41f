// A static file server for the browser tests and the demo: serves the
// repository's files (the host's modules, the test page, the demo, the
// built plugins) with the two headers that make a page cross-origin
// isolated, which SharedArrayBuffer needs:
//
//   Cross-Origin-Opener-Policy: same-origin
//   Cross-Origin-Embedder-Policy: require-corp
//
//   node hosts/web/driver/server.js [--port N] [--no-isolation]
//
// prints `serving http://127.0.0.1:PORT/` and runs until stopped. Only GET
// and HEAD of files under the repository root; `--no-isolation` leaves the
// headers out, to see what the host says without them.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(fileURLToPath(new URL('../../..', import.meta.url)));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

/**
 * Starts the server on 127.0.0.1 (port 0: any free one); resolves with
 * { server, url }.
 * @param {{ port?: number, isolation?: boolean }} [options]
 */
export function serve({ port = 0, isolation = true } = {}) {
  const server = http.createServer((req, res) => {
    const headers = {};
    if (isolation) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, headers).end();
      return;
    }
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400, headers).end();
      return;
    }
    // Resolved against the root; anything that leaves it is not served.
    const file = path.resolve(ROOT, `.${rel}`);
    if (file !== ROOT && !file.startsWith(ROOT + path.sep)) {
      res.writeHead(403, headers).end();
      return;
    }
    fs.stat(file, (err, stat) => {
      const target = !err && stat.isDirectory() ? path.join(file, 'index.html') : file;
      fs.readFile(target, (err2, body) => {
        if (err2) {
          res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end(`not found: ${rel}\n`);
          return;
        }
        res.writeHead(200, {
          ...headers,
          'Content-Type': TYPES[path.extname(target)] ?? 'application/octet-stream',
          'Content-Length': body.length,
          'Cache-Control': 'no-store',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      });
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}/` }));
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--port');
  const { url } = await serve({ port: at >= 0 ? Number(args[at + 1]) : 8000, isolation: !args.includes('--no-isolation') });
  console.log(`serving ${url}`);
}
