// The verify worker: Pyodide with ridpixels (the pixel policy in pure Python, from the project's
// wheel), checking each photo the JavaScript pipeline protected. Started only in the app's verify
// mode (client/verify.js); the normal page never loads it or any file below.
// Messages in: check. Messages out: ready (or error without id), done, error.
// Pyodide's files and the wheel come from this origin only (build.mjs copies them beside this
// bundle); the wheel is checked against the sha256 recorded at build time before it is installed.
// This side only decodes the output PNG and reorders values into one layout; every comparison is
// made in Python (verify.py).

import { decode as decodePng } from 'fast-png';

import { MAX_PIXELS } from '../shared/pipeline.js';
import { decode as decodeImage } from '../worker/decode.js';
import VERIFY_PY from './verify.py';

const PYODIDE_DIR = new URL(__PYODIDE_DIR__, import.meta.url).href;
const WHEEL_URL = new URL(__RIDPIXELS_WHEEL__, import.meta.url).href;
const WHEEL_SHA256 = __RIDPIXELS_WHEEL_SHA256__;

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function boot() {
  const started = performance.now();
  const { loadPyodide } = await import(PYODIDE_DIR + 'pyodide.mjs');
  // packageBaseUrl: never the CDN Pyodide would fall back to (nothing but the wheel is loaded).
  const pyodide = await loadPyodide({ indexURL: PYODIDE_DIR, packageBaseUrl: PYODIDE_DIR,
    stdout: (s) => console.log(s), stderr: (s) => console.warn(s) });
  const booted = performance.now();
  const response = await fetch(WHEEL_URL);
  if (!response.ok) throw new Error(`${WHEEL_URL}: HTTP ${response.status}`);
  const wheel = new Uint8Array(await response.arrayBuffer());
  const digest = hex(await crypto.subtle.digest('SHA-256', wheel));
  if (digest !== WHEEL_SHA256) throw new Error(`the ridpixels wheel's sha256 ${digest.slice(0, 12)}… is not the build's ${WHEEL_SHA256.slice(0, 12)}…; refusing it`);
  const site = pyodide.runPython("import sysconfig; sysconfig.get_path('purelib')");
  pyodide.unpackArchive(wheel, 'wheel', { extractDir: site });
  const ns = pyodide.globals.get('dict')();
  pyodide.runPython(VERIFY_PY, { globals: ns });
  const about = JSON.parse(ns.get('about')());
  return {
    check: ns.get('check'),
    info: { ...about, pyodide: pyodide.version, wheel: WHEEL_URL.slice(WHEEL_URL.lastIndexOf('/') + 1),
      boot_ms: booted - started, ready_ms: performance.now() - started },
  };
}

const python = boot();

/** The input in the output's layout (RGB or RGBA, interleaved): the alpha channel is compared
 * only where the PNG has one. */
function sameLayout(rgba, channels) {
  if (channels === 4) return rgba;
  if (channels !== 3) throw new Error(`the output PNG has ${channels} channels, expected 3 or 4`);
  const rgb = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

/** float32 (1,3,H,W) -> (H,W,3) interleaved, and the PNG's RGB values in that order. */
function interleaved(floats, h, w, data, channels) {
  const plane = h * w;
  const f = new Float32Array(3 * plane);
  const js8 = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) {
      f[3 * i + ch] = floats[ch * plane + i];
      js8[3 * i + ch] = data[channels * i + ch];
    }
  }
  return { f, js8 };
}

/** One photo: { width, height, spec (manifest.pipeline.working_size), tile, eps, plan: { working,
 * origins } (what the pipeline used), input (the decoded RGBA it protected; null: decode `file`),
 * floats (float32 (1,3,H,W) before rounding, or null), png (the protected PNG's bytes) }. */
async function onCheck({ id, width, height, spec, tile, eps, plan, input, floats: planar, file, png }) {
  const { check } = await python;
  const started = performance.now();
  const out = decodePng(new Uint8Array(png));
  if (out.depth !== 8) throw new Error(`the output PNG has ${out.depth}-bit values, expected 8`);
  // The decoded input the pipeline used; for the server backend (none sent back) decoded here.
  const rgba = input ? new Uint8Array(input) : (await decodeImage(new Uint8Array(file), MAX_PIXELS)).rgba;
  const original = sameLayout(rgba, out.channels);
  const sized = out.width === width && out.height === height;
  const floats = sized && planar ? interleaved(new Float32Array(planar), height, width, out.data, out.channels) : null;
  const params = JSON.stringify({ width, height, png_width: out.width, png_height: out.height, channels: out.channels,
    spec, tile, eps, working: plan.working, origins: plan.origins });
  const checks = JSON.parse(check(params, original, new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength),
    floats?.f, floats?.js8)); // undefined is None in Python (null would be pyodide.ffi.jsnull)
  return { type: 'done', id, checks, ms: performance.now() - started };
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type !== 'check') throw new Error(`unknown message ${data.type}`);
    self.postMessage(await onCheck(data));
  } catch (err) {
    self.postMessage({ type: 'error', id: data.id, message: err.message });
  }
};

python.then(({ info }) => self.postMessage({ type: 'ready', ...info }),
  (err) => self.postMessage({ type: 'error', message: `Pyodide could not start: ${err.message}` }));
