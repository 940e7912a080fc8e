// npm run build -> dist/: the app (index.html, app.js), the library (rid.js), the widget
// (rid-widget.js), the worker and onnxruntime-web's files under assets/ (content-hashed or
// versioned names: served immutable), an example host page, and the offline service worker.

import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

import * as esbuild from 'esbuild';

const DIST = 'dist';
const ORT = JSON.parse(readFileSync('node_modules/onnxruntime-web/package.json', 'utf8'));
const ORT_DIR = `ort-${ORT.version}`;
const ORT_FILES = ['ort.wasm.min.mjs', 'ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];
const common = { bundle: true, format: 'esm', target: 'es2022', minify: true, legalComments: 'linked', logLevel: 'warning' };

rmSync(DIST, { recursive: true, force: true });
mkdirSync(`${DIST}/assets/${ORT_DIR}`, { recursive: true });
for (const file of ORT_FILES) cpSync(`node_modules/onnxruntime-web/dist/${file}`, `${DIST}/assets/${ORT_DIR}/${file}`);

const worker = await esbuild.build({
  ...common, entryPoints: { 'rid-worker': 'src/worker/worker.js' }, outdir: `${DIST}/assets`, entryNames: '[name]-[hash]',
  metafile: true, define: { __ORT_DIR__: JSON.stringify(`./${ORT_DIR}/`) },
});
const workerFile = basename(Object.keys(worker.metafile.outputs).find((f) => f.endsWith('.js')));

await esbuild.build({
  ...common, entryPoints: { rid: 'src/client/protector.js', 'rid-widget': 'src/client/widget.js', app: 'src/client/app.js' },
  outdir: DIST, define: { __RID_WORKER__: JSON.stringify(`./assets/${workerFile}`) },
});
cpSync('public', DIST, { recursive: true });
writeFileSync(`${DIST}/build.json`, JSON.stringify({ worker: workerFile, onnxruntime_web: ORT.version, ort_dir: `assets/${ORT_DIR}` }, null, 2) + '\n');
console.log(`dist/ written: worker assets/${workerFile}, onnxruntime-web ${ORT.version}`);
