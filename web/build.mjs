// npm run build -> dist/: the app (index.html, app.js), the library (rid.js), the widget
// (rid-widget.js), the worker and onnxruntime-web's files under assets/ (content-hashed or
// versioned names: served immutable), an example host page, and the offline service worker.
// The app's verify mode: the verify worker, Pyodide's files and the ridpixels wheel (built by
// scripts/build_pixel_wheel.py with $PYTHON, else ../.venv/bin/python, else python3) under
// assets/pyodide-<version>/, loaded only when the page is asked to verify. The page for researchers
// (research/index.html): ../docs/efficacy/README.md rendered by marked, with its images.
// Everything is written into a scratch folder beside dist/ that replaces dist/ only once the
// build has succeeded: a failed build leaves the previous dist/ as it was. build.json, written
// last, lists every file, so the server can tell a complete dist/ from a partial one.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import * as esbuild from 'esbuild';
import { Marked } from 'marked';

const FINAL = 'dist';
const DIST = mkdtempSync('dist.partial-'); // the same file system as dist/, so the rename below is one step
const ORT = JSON.parse(readFileSync('node_modules/onnxruntime-web/package.json', 'utf8'));
const ORT_DIR = `ort-${ORT.version}`;
const ORT_FILES = ['ort.wasm.min.mjs', 'ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];
const PYODIDE = JSON.parse(readFileSync('node_modules/pyodide/package.json', 'utf8'));
const PYODIDE_DIR = `pyodide-${PYODIDE.version}`;
const PYODIDE_FILES = ['pyodide.mjs', 'pyodide.asm.mjs', 'pyodide.asm.wasm', 'python_stdlib.zip', 'pyodide-lock.json'];
const PYTHON = process.env.PYTHON || (existsSync('../.venv/bin/python') ? '../.venv/bin/python' : 'python3');
const common = { bundle: true, format: 'esm', target: 'es2022', minify: true, legalComments: 'linked', logLevel: 'warning' };

/** The efficacy docs as a page of this site: its images beside it; a link to a repository file,
 * which this site does not serve, stays as its words. */
function buildResearchPage(docs, out) {
  mkdirSync(out, { recursive: true });
  const local = (href) => !/^[a-z]+:|^#|^\//i.test(href);
  const marked = new Marked({ gfm: true });
  marked.use({ renderer: {
    image({ href, text }) {
      if (!local(href) || !existsSync(join(docs, href)) || href.includes('/')) return text;
      cpSync(join(docs, href), join(out, href));
      return `<img src="${href}" alt="${text.replaceAll('"', '&quot;')}" loading="lazy">`;
    },
    link({ href, tokens }) {
      const text = this.parser.parseInline(tokens);
      return local(href) ? text : `<a href="${href}">${text}</a>`;
    },
  } });
  const body = marked.parse(readFileSync(join(docs, 'README.md'), 'utf8'));
  writeFileSync(join(out, 'index.html'), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>RID: for researchers</title><link rel="icon" href="/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/app.css"></head>
<body class="research"><p><a href="/">Back to protecting photos</a></p>
${body}</body></html>
`);
}

/** The service worker's cache named by a hash of the files it keeps (all but Pyodide's). */
function stampServiceWorker(sw, skip) {
  const hash = createHash('sha256');
  for (const f of readdirSync(DIST, { recursive: true }).sort()) {
    if (f.startsWith(skip) || f === 'sw.js' || !statSync(join(DIST, f)).isFile()) continue;
    hash.update(f).update(readFileSync(join(DIST, f)));
  }
  writeFileSync(sw, readFileSync(sw, 'utf8').replace('__RID_BUILD__', hash.digest('hex').slice(0, 12)));
}

process.on('exit', (code) => code && rmSync(DIST, { recursive: true, force: true }));

mkdirSync(`${DIST}/assets/${ORT_DIR}`, { recursive: true });
for (const file of ORT_FILES) cpSync(`node_modules/onnxruntime-web/dist/${file}`, `${DIST}/assets/${ORT_DIR}/${file}`);
mkdirSync(`${DIST}/assets/${PYODIDE_DIR}`, { recursive: true });
for (const file of PYODIDE_FILES) cpSync(`node_modules/pyodide/${file}`, `${DIST}/assets/${PYODIDE_DIR}/${file}`);

// The wheel keeps its own name (Pyodide reads a wheel's name) in a folder named by its hash.
const scratch = mkdtempSync(join(tmpdir(), 'rid-wheel-'));
let built;
try {
  built = execFileSync(PYTHON, ['../scripts/build_pixel_wheel.py', scratch], { encoding: 'utf8' }).trim().split('\n').pop();
} catch (err) {
  rmSync(scratch, { recursive: true, force: true });
  console.error(`build failed: the ridpixels wheel could not be built with ${PYTHON} (${err.message.split('\n')[0]}); `
    + `${FINAL}/ is left as it was. Run ../scripts/setup.sh first, or set PYTHON to a Python with pip.`);
  process.exit(1);
}
const wheelBytes = readFileSync(built);
const wheelSha256 = createHash('sha256').update(wheelBytes).digest('hex');
const wheelPath = `${PYODIDE_DIR}/ridpixels-${wheelSha256.slice(0, 12)}/${basename(built)}`;
mkdirSync(`${DIST}/assets/${wheelPath.slice(0, wheelPath.lastIndexOf('/'))}`, { recursive: true });
writeFileSync(`${DIST}/assets/${wheelPath}`, wheelBytes);
rmSync(scratch, { recursive: true, force: true });

const worker = await esbuild.build({
  ...common, entryPoints: { 'rid-worker': 'src/worker/worker.js' }, outdir: `${DIST}/assets`, entryNames: '[name]-[hash]',
  metafile: true, define: { __ORT_DIR__: JSON.stringify(`./${ORT_DIR}/`) },
});
const workerFile = basename(Object.keys(worker.metafile.outputs).find((f) => f.endsWith('.js')));

const verify = await esbuild.build({
  ...common, entryPoints: { 'rid-verify': 'src/verify/verify-worker.js' }, outdir: `${DIST}/assets`, entryNames: '[name]-[hash]',
  metafile: true, loader: { '.py': 'text' },
  define: { __PYODIDE_DIR__: JSON.stringify(`./${PYODIDE_DIR}/`), __RIDPIXELS_WHEEL__: JSON.stringify(`./${wheelPath}`),
    __RIDPIXELS_WHEEL_SHA256__: JSON.stringify(wheelSha256) },
});
const verifyFile = basename(Object.keys(verify.metafile.outputs).find((f) => f.endsWith('.js')));
// The app's bridge to it, imported by app.js only in verify mode: the normal page's bundles stay as they were.
const bridge = await esbuild.build({
  ...common, entryPoints: { 'rid-verify-bridge': 'src/client/verify.js' }, outdir: `${DIST}/assets`, entryNames: '[name]-[hash]',
  metafile: true, define: { __RID_VERIFY_WORKER__: JSON.stringify(`./${verifyFile}`) },
});
const bridgeFile = basename(Object.keys(bridge.metafile.outputs).find((f) => f.endsWith('.js')));

await esbuild.build({
  ...common, entryPoints: { rid: 'src/client/protector.js', 'rid-widget': 'src/client/widget.js', app: 'src/client/app.js' },
  outdir: DIST, define: { __RID_WORKER__: JSON.stringify(`./assets/${workerFile}`), __RID_VERIFY_BRIDGE__: JSON.stringify(`./assets/${bridgeFile}`) },
});
cpSync('public', DIST, { recursive: true });
buildResearchPage('../docs/efficacy', `${DIST}/research`);
stampServiceWorker(`${DIST}/sw.js`, `assets/${PYODIDE_DIR}/`);
const files = readdirSync(DIST, { recursive: true }).filter((f) => statSync(join(DIST, f)).isFile()).sort();
writeFileSync(`${DIST}/build.json`, JSON.stringify({ worker: workerFile, onnxruntime_web: ORT.version, ort_dir: `assets/${ORT_DIR}`,
  verify_worker: verifyFile, verify_bridge: bridgeFile, pyodide: PYODIDE.version, pyodide_dir: `assets/${PYODIDE_DIR}`, pyodide_files: PYODIDE_FILES,
  ridpixels_wheel: `assets/${wheelPath}`, ridpixels_wheel_sha256: wheelSha256, files }, null, 2) + '\n');
rmSync(FINAL, { recursive: true, force: true });
renameSync(DIST, FINAL);
console.log(`${FINAL}/ written: worker assets/${workerFile}, onnxruntime-web ${ORT.version}; verify mode assets/${verifyFile}, `
  + `Pyodide ${PYODIDE.version}, ${basename(built)}`);
