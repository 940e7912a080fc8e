// The worker: models, sessions, decoding, the tiled pipeline and encoding, off the page's thread.
// Messages in: init, protect, generator (the generator graph alone, for parity fixtures).
// Messages out: ready, download, progress, done, error. Buffers are transferred, never copied.
// A local protection's done also carries the plan it used (working size, tile origins) and the
// milliseconds of each stage (decode, shrink, generator, apply, encode: bench/browser_speed.py).
// Output formats (shared/formats.js): PNG by png.js, JPEG and lossless WebP by the browser's own
// encoders (OffscreenCanvas), which read the 8-bit pixels as they are for an opaque photo.
// A randomised generator (manifest.seed) gets a fresh seed's code for every protection
// (shared/seed.js); the seed is never stored or posted back. A `seed` (32 hex digits) in a
// protect or generator message fixes it, for reproducibility checks only.

import { OUTPUT_FORMATS } from '../shared/formats.js';
import { MAX_PIXELS, addPart, tileOrigins, tileToFloat, workingSize, writeTile8 } from '../shared/pipeline.js';
import { drawCode, parseSeed, seedHex, seedSpec } from '../shared/seed.js';
import { candidates, wasmThreads } from './backends.js';
import { ImageError, decode } from './decode.js';
import { loadManifest, loadVerified } from './models.js';
import { encodePng } from './png.js';

const ORT_DIR = new URL(__ORT_DIR__, import.meta.url).href; // onnxruntime-web's files, copied beside the worker (build.mjs)
const ORT_MODULE = { wasm: 'ort.wasm.min.mjs', webgpu: 'ort.webgpu.min.mjs' };

let state = null; // { manifest, manifestUrl, serverUrl, queue: [backend...], runner, log: [] }

async function localRunner(backend, manifest, manifestUrl) {
  const ort = await import(ORT_DIR + ORT_MODULE[backend]);
  ort.env.wasm.wasmPaths = ORT_DIR;
  ort.env.wasm.numThreads = wasmThreads();
  ort.env.logLevel = 'error';
  const pieces = manifest.pipeline.pieces;
  const files = { generator: manifest.web_default_file, shrink: pieces.shrink.file, apply: pieces.apply.file };
  // Without spinning, onnxruntime's idle threads leave the cores to the tiles and the encoding
  // that run between the sessions (bench/browser_speed.py's stages).
  const options = { executionProviders: [backend], graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } } };
  const sessions = {};
  // Progress per file, and over all the files this backend loads (modelLoaded of modelTotal bytes).
  const modelTotal = Object.values(files).reduce((sum, file) => sum + manifest.files[file].bytes, 0);
  let before = 0;
  for (const [role, file] of Object.entries(files)) {
    const bytes = await loadVerified(manifestUrl, manifest, file, (loaded, total, cached) =>
      self.postMessage({ type: 'download', file, loaded, total, cached: !!cached, modelLoaded: before + loaded, modelTotal }));
    before += bytes.length;
    sessions[role] = await ort.InferenceSession.create(bytes, options);
  }
  const spec = seedSpec(manifest);
  const takesCode = sessions.generator.inputNames.includes('code');
  if (takesCode !== !!spec) {
    throw new Error(`${files.generator} ${takesCode ? 'takes' : 'has no'} code input but the manifest ${spec ? 'has' : 'has no'} seed rule`);
  }
  const tensor = (type, data, dims) => new ort.Tensor(type, data, dims);
  const i64 = (a, b) => tensor('int64', BigInt64Array.from([BigInt(a), BigInt(b)]), [2]);
  const runner = {
    backend,
    threads: backend === 'wasm' ? wasmThreads() : null,
    file: files.generator,
    /** code: Float32Array(code_dim) for a randomised generator, else null. */
    async generator(x, h, w, eps, code) {
      const feeds = { image: tensor('float32', x, [1, 3, h, w]), eps: tensor('float32', Float32Array.of(eps), [1]) };
      if (spec) feeds.code = tensor('float32', code, [1, spec.dim]);
      const out = await sessions.generator.run(feeds);
      return { protected: out.protected.data, delta: out.delta.data };
    },
    async shrink(tile, th, tw, r, c, h, w, hw, ww) {
      const out = await sessions.shrink.run({ tile: tensor('float32', tile, [1, 3, th, tw]), origin: i64(r, c), full: i64(h, w), work: i64(hw, ww) });
      const [, , k, m] = out.part.dims;
      const [pr, pc] = Array.from(out.part_origin.data, Number);
      return { part: out.part.data, k, m, pr, pc };
    },
    async apply(tile, th, tw, delta, hw, ww, r, c, h, w, eps) {
      const out = await sessions.apply.run({ tile: tensor('float32', tile, [1, 3, th, tw]), delta: tensor('float32', delta, [1, 3, hw, ww]),
        origin: i64(r, c), full: i64(h, w), eps: tensor('float32', Float32Array.of(eps), [1]) });
      return out.protected.data;
    },
  };
  if (backend === 'wasm') await warmUp(runner, spec);
  return runner;
}

/** One small run of each piece before the first photo. onnxruntime-web's first run of a session
 * is several times slower than the next (its arena and kernels are set up then): at 128² that cost
 * is paid on a sixteenth of a 512² photo's work, not on the person's first photo. Not on WebGPU,
 * whose software adapter (the tests') needs seconds even for this. */
async function warmUp(runner, spec) {
  const side = 128, tile = 16;
  await runner.shrink(new Float32Array(3 * tile * tile), tile, tile, 0, 0, tile, tile, tile, tile);
  await runner.generator(new Float32Array(3 * side * side), side, side, 1 / 255, spec ? new Float32Array(spec.dim) : null);
  await runner.apply(new Float32Array(3 * tile * tile), tile, tile, new Float32Array(3 * tile * tile), tile, tile, 0, 0, tile, tile, 1 / 255);
}

/** The generator's code for one run: null for a deterministic generator; else the code of the
 * given seed, or of a fresh one (dropped once the code is made). */
async function codeFor(manifest, seed) {
  const spec = seedSpec(manifest);
  return spec ? drawCode(spec, seed) : null;
}

/** One photo through the exported pieces, as ridexport.runtime.OnnxProtector does it. */
async function protectLocal(runner, manifest, image, epsLevels, wantFloat, progress, seed, stages) {
  const { rgba, width: w, height: h } = image;
  const timed = async (stage, work) => {
    const t = performance.now();
    const out = await work();
    stages[stage] = (stages[stage] ?? 0) + performance.now() - t;
    return out;
  };
  const tile = manifest.pipeline.pieces.tile;
  const [hw, ww] = workingSize(h, w, manifest.pipeline.working_size);
  const eps = Math.fround(epsLevels / 255);
  const origins = tileOrigins(h, w, tile);
  // A photo already at the working size: the shrink's weights are then exactly 1 on the diagonal and
  // 0 elsewhere (scale 1, support 1), so its output is the photo itself, bit for bit. Skipping it
  // saves the costliest piece of a 512-px photo after the generator (two dense 512x512 products).
  const atWorkingSize = hw === h && ww === w;
  const steps = (atWorkingSize ? 0 : origins.length) + origins.length + 1;
  let done = 0;
  const xWork = atWorkingSize ? tileToFloat(rgba, w, 0, 0, h, w) : new Float32Array(3 * hw * ww);
  if (!atWorkingSize) for (const [r, c] of origins) {
    const th = Math.min(tile, h - r), tw = Math.min(tile, w - c);
    await timed('shrink', async () => {
      const p = await runner.shrink(tileToFloat(rgba, w, r, c, th, tw), th, tw, r, c, h, w, hw, ww);
      addPart(xWork, hw, ww, p.part, p.k, p.m, p.pr, p.pc);
    });
    progress(++done / steps);
  }
  stages.shrink ??= 0;
  const code = await codeFor(manifest, seed);
  const { delta } = await timed('generator', () => runner.generator(xWork, hw, ww, eps, code));
  progress(++done / steps);
  const out = new Uint8ClampedArray(rgba); // alpha stays as it came
  const floats = wantFloat ? new Float32Array(3 * h * w) : null;
  for (const [r, c] of origins) {
    const th = Math.min(tile, h - r), tw = Math.min(tile, w - c);
    const prot = await timed('apply', async () => {
      const p = await runner.apply(tileToFloat(rgba, w, r, c, th, tw), th, tw, delta, hw, ww, r, c, h, w, eps);
      writeTile8(out, w, p, r, c, th, tw);
      return p;
    });
    if (floats) for (let ch = 0; ch < 3; ch++) for (let y = 0; y < th; y++)
      floats.set(prot.subarray((ch * th + y) * tw, (ch * th + y + 1) * tw), (ch * h + r + y) * w + c);
    progress(++done / steps);
  }
  return { out, floats, plan: { working: [hw, ww], tile, origins } };
}

/** The protected pixels as a file of `format`: exactly its bytes, in a buffer of their own. */
async function encode(rgba, width, height, hasAlpha, format) {
  if (format === 'png') {
    if (hasAlpha) return encodePng(rgba, width, height, 4);
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      rgb[j] = rgba[i];
      rgb[j + 1] = rgba[i + 1];
      rgb[j + 2] = rgba[i + 2];
    }
    return encodePng(rgb, width, height, 3);
  }
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), width, height), 0, 0);
  const spec = OUTPUT_FORMATS[format];
  // Chromium writes lossless WebP at quality 1 (tests/test_web_page.py checks it value for value;
  // canEncode checks it once in whatever browser this is).
  const blob = await canvas.convertToBlob({ type: spec.media_type, quality: spec.lossless ? 1 : spec.quality / 100 });
  if (blob.type !== spec.media_type) throw new ImageError('format_unavailable', `this browser cannot write ${format} (it gave ${blob.type})`);
  return new Uint8Array(await blob.arrayBuffer());
}

/** Why this photo cannot be written as `format` here, before any work is spent on it: a canvas
 * keeps colour premultiplied by alpha, so it would change what lies under transparent parts (JPEG
 * has no alpha at all); and a browser whose WebP is not lossless. */
async function checkFormat(format, hasAlpha) {
  if (format === 'png') return;
  if (hasAlpha) throw new ImageError(format === 'jpeg' ? 'alpha_not_supported' : 'alpha_needs_png', `${format} cannot keep this photo's alpha exactly`);
  if (OUTPUT_FORMATS[format].lossless && !(await canEncode(format))) throw new ImageError('format_unavailable', `this browser's ${format} is not lossless`);
}

const losslessHere = {}; // format -> Promise<boolean>

/** Whether this browser writes `format` without loss: a small opaque test pattern, encoded and decoded. */
function canEncode(format) {
  losslessHere[format] ??= (async () => {
    const [w, h] = [8, 4];
    const pixels = new Uint8ClampedArray(w * h * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 37) % 256));
    const canvas = new OffscreenCanvas(w, h);
    canvas.getContext('2d').putImageData(new ImageData(pixels, w, h), 0, 0);
    const blob = await canvas.convertToBlob({ type: OUTPUT_FORMATS[format].media_type, quality: 1 });
    if (blob.type !== OUTPUT_FORMATS[format].media_type) return false;
    const back = new OffscreenCanvas(w, h).getContext('2d', { willReadFrequently: true });
    back.drawImage(await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' }), 0, 0);
    return back.getImageData(0, 0, w, h).data.every((v, i) => v === pixels[i]);
  })().catch(() => false);
  return losslessHere[format];
}

async function protectOnServer(bytes, name, epsLevels, seed, format) {
  const form = new FormData();
  form.append('file', new Blob([bytes]), name);
  form.append('eps', String(epsLevels));
  form.append('format', format);
  if (seed !== null) form.append('seed', seedHex(seed)); // only a given one; else the server draws its own
  const response = await fetch(new URL('/v1/protect', state.serverUrl), { method: 'POST', body: form });
  if (!response.ok) {
    const body = await response.json().catch(() => ({ code: `http_${response.status}`, detail: response.statusText }));
    const [, w, h] = /(\d+)x(\d+)/.exec(body.detail ?? '') ?? [];
    throw new ImageError(body.code, body.detail, { pixels: w ? Number(w) * Number(h) : null });
  }
  const file = new Uint8Array(await response.arrayBuffer());
  const bitmap = await createImageBitmap(new Blob([file]));
  const size = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return { file, ...size };
}

/** The next backend in the queue that starts; the reasons of those that did not are logged. */
async function startNext() {
  while (state.queue.length) {
    const backend = state.queue.shift();
    try {
      state.runner = backend === 'server' ? { backend, threads: null, file: null } : await localRunner(backend, state.manifest, state.manifestUrl);
      return;
    } catch (err) {
      const reason = `${backend} failed to start: ${err.message}`;
      state.log.push(reason);
      console.warn(reason);
      if (err.code === 'integrity') throw err; // a tampered model is never worked around
    }
  }
  throw new Error(`no backend could start: ${state.log.join('; ')}`);
}

function readyMessage() {
  const { runner, manifest, log } = state;
  return { type: 'ready', backend: runner.backend, threads: runner.threads, file: runner.file, manifest, log,
    crossOriginIsolated: !!self.crossOriginIsolated };
}

async function onInit({ manifestUrl, backend = 'auto', serverUrl = null }) {
  const absolute = new URL(manifestUrl, self.location.href).href;
  const manifest = await loadManifest(absolute);
  state = { manifest, manifestUrl: absolute, serverUrl: serverUrl && new URL(serverUrl, self.location.href).href,
    queue: await candidates(backend, serverUrl), runner: null, log: [] };
  await startNext();
  return readyMessage();
}

/** A given seed checked up front (a bad one is the caller's fault, never a backend's): null if none. */
function givenSeed(seed) {
  if (seed === undefined || seed === null) return null;
  try {
    return parseSeed(seed);
  } catch (err) {
    throw new ImageError('bad_seed', err.message);
  }
}

async function onProtect({ id, buffer, name, eps, float, seed, input, format = 'png' }) {
  const started = performance.now();
  const bytes = new Uint8Array(buffer);
  const epsLevels = eps ?? state.manifest.eps_levels;
  if (!state.manifest.eps_levels_allowed.includes(epsLevels)) throw new ImageError('bad_eps', `eps must be one of ${state.manifest.eps_levels_allowed}`);
  if (!OUTPUT_FORMATS[format]) throw new ImageError('bad_format', `format must be one of ${Object.keys(OUTPUT_FORMATS).join(', ')}`);
  const fixed = givenSeed(seed);
  const progress = (fraction) => self.postMessage({ type: 'progress', id, fraction });
  for (;;) {
    const backend = state.runner.backend;
    try {
      if (backend === 'server') {
        const { file, width, height } = await protectOnServer(bytes, name, epsLevels, fixed, format);
        return { message: { type: 'done', id, file: file.buffer, format, width, height, backend, ms: performance.now() - started, eps: epsLevels },
          transfer: [file.buffer] };
      }
      const stages = {};
      let t = performance.now();
      const image = await decode(bytes, MAX_PIXELS);
      await checkFormat(format, image.hasAlpha);
      stages.decode = performance.now() - t;
      const { out, floats, plan } = await protectLocal(state.runner, state.manifest, image, epsLevels, float, progress, fixed, stages);
      t = performance.now();
      const file = await encode(out, image.width, image.height, image.hasAlpha, format);
      stages.encode = performance.now() - t;
      // input: the decoded RGBA the pipeline protected, for the app's verify mode (client/verify.js).
      const rgba = input ? new Uint8Array(image.rgba) : null; // a copy with a buffer of its own, to transfer
      const transfer = [file.buffer, ...(floats ? [floats.buffer] : []), ...(rgba ? [rgba.buffer] : [])];
      return { message: { type: 'done', id, file: file.buffer, format, width: image.width, height: image.height, backend,
        threads: state.runner.threads, ms: performance.now() - started, stages, eps: epsLevels, floats: floats?.buffer ?? null,
        plan, input: rgba?.buffer ?? null }, transfer };
    } catch (err) {
      // The photo's (or the caller's) fault, a given seed this page cannot honour, or nowhere left to go.
      if (err instanceof ImageError || err.code === 'seed_unavailable' || !state.queue.length) throw err;
      const reason = `${backend} failed while running: ${err.message}`;
      state.log.push(reason);
      console.warn(reason);
      await startNext();
    }
  }
}

async function onGenerator({ id, data, h, w, eps, seed }) {
  if (!state.runner.generator) throw new Error(`the ${state.runner.backend} backend cannot run the generator alone`);
  const code = await codeFor(state.manifest, givenSeed(seed));
  const out = await state.runner.generator(new Float32Array(data), h, w, Math.fround(eps), code);
  const result = new Float32Array(out.protected);
  return { message: { type: 'done', id, protected: result.buffer, backend: state.runner.backend }, transfer: [result.buffer] };
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === 'init') self.postMessage(await onInit(data));
    else {
      const handler = { protect: onProtect, generator: onGenerator }[data.type];
      const { message, transfer } = await handler(data);
      self.postMessage(message, transfer);
    }
  } catch (err) {
    self.postMessage({ type: 'error', id: data.id, code: err.code ?? 'failed', message: err.message });
  }
};
