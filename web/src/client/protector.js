// The library: one worker bridge. Everything heavy (models, decoding, inference, encoding) runs in
// the worker; this side only posts files in and results out, transferring buffers.

/**
 * @typedef {'auto'|'webgpu'|'wasm'|'server'} Backend
 * @typedef {'png'|'jpeg'|'webp'} Format
 * @typedef {{ blob: Blob, width: number, height: number, backend: Backend, ms: number, eps: number,
 *             name: string, format: Format, fileName: string, threads: number|null, floats?: Float32Array,
 *             input?: Uint8Array, stages?: { decode: number, shrink: number, generator: number, apply: number, encode: number },
 *             plan?: { working: [number, number], tile: number, origins: [number, number][] } }} Protected
 *   blob: exactly the encoded file; fileName: the protected copy's name (NAME.protected.EXT);
 *   plan (local backends): the working size and tile origins the pipeline used; stages (local
 *   backends): milliseconds spent in each stage.
 * @typedef {{ stage: 'download', file: string, loaded: number, total: number, cached: boolean,
 *             modelLoaded: number, modelTotal: number }
 *          | { stage: 'photo', name: string, fraction: number }} Progress
 *   download: loaded of total bytes of one file, and modelLoaded of modelTotal bytes over all the
 *   files the backend loads (cached: this file came from the cache, by its sha256).
 * @typedef {{ eps?: number, name?: string, format?: Format, float?: boolean, input?: boolean, seed?: string|Uint8Array }} ProtectOptions
 *   eps: the bound in 8-bit levels (default the model's); format: the file written (default png;
 *   shared/formats.js: png and webp lossless, jpeg the smaller file); float: also return the protected photo
 *   before rounding (float32 (1,3,H,W)); input: also return the decoded RGBA (H*W*4) that was
 *   protected (local backends; the app's verify mode); seed: 32 hex digits (or 16 bytes) fixing
 *   the randomised generator's seed, for reproducibility checks only; omit it in real use, and
 *   every protection then draws a fresh secret seed from crypto.getRandomValues that is never
 *   stored or sent.
 */

import { OUTPUT_FORMATS, protectedName } from '../shared/formats.js';

const WORKER_URL = new URL(__RID_WORKER__, import.meta.url); // the hashed worker bundle (build.mjs)

/** A module worker from our own origin, or, when this script was loaded by another site's page
 * (the widget), a same-origin blob shim that imports it (CORS allows that import). */
function startWorker() {
  if (WORKER_URL.origin === self.location.origin) return new Worker(WORKER_URL, { type: 'module' });
  const shim = new Blob([`import ${JSON.stringify(WORKER_URL.href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module' });
}

/**
 * @param {{ manifestUrl: string, backend?: Backend, serverUrl?: string|null,
 *           onProgress?: (p: Progress) => void }} options
 * @returns {Promise<{ backend: Backend, threads: number|null, manifest: object, log: string[],
 *   protect: (file: Blob, options?: ProtectOptions) => Promise<Protected>,
 *   runGenerator: (data: Float32Array, h: number, w: number, eps: number, seed?: string|Uint8Array)
 *     => Promise<{ protected: Float32Array, backend: Backend }>,
 *   close: () => void }>}
 */
export async function createProtector({ manifestUrl, backend = 'auto', serverUrl = null, onProgress } = {}) {
  if (!manifestUrl) throw new Error('createProtector needs manifestUrl');
  const worker = startWorker();
  const pending = new Map();
  let next = 0;
  let ready;
  const started = new Promise((resolve, reject) => (ready = { resolve, reject }));
  worker.onmessage = ({ data }) => {
    if (data.type === 'download') return onProgress?.({ stage: 'download', ...data });
    if (data.type === 'progress') return onProgress?.({ stage: 'photo', name: pending.get(data.id)?.name, fraction: data.fraction });
    if (data.type === 'ready') return ready.resolve(data);
    const job = pending.get(data.id);
    if (data.id === undefined || !job) return ready.reject(Object.assign(new Error(data.message), { code: data.code }));
    pending.delete(data.id);
    if (data.type === 'error') job.reject(Object.assign(new Error(data.message), { code: data.code }));
    else job.resolve(data);
  };
  worker.onerror = (event) => ready.reject(new Error(`worker failed: ${event.message}`));
  worker.postMessage({ type: 'init', manifestUrl: new URL(manifestUrl, location.href).href, backend,
    serverUrl: serverUrl && new URL(serverUrl, location.href).href });
  let info;
  try {
    info = await started;
  } catch (err) {
    worker.terminate();
    throw err;
  }
  const call = (message, transfer, name) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject, name });
      worker.postMessage({ ...message, id }, transfer);
    });
  return {
    backend: info.backend,
    threads: info.threads,
    manifest: info.manifest,
    log: info.log,
    crossOriginIsolated: info.crossOriginIsolated,
    /** @param {Blob} file @param {ProtectOptions} [options] seed: for reproducibility checks only; omit it in real use. */
    async protect(file, { eps, name = file.name ?? 'photo', format = 'png', float = false, input = false, seed } = {}) {
      const buffer = await file.arrayBuffer();
      const r = await call({ type: 'protect', buffer, name, eps, format, float, input, seed: seed ?? null }, [buffer], name);
      return { blob: new Blob([r.file], { type: OUTPUT_FORMATS[r.format].media_type }), width: r.width, height: r.height,
        backend: r.backend, threads: r.threads ?? null, ms: r.ms, eps: r.eps, name, format: r.format,
        fileName: protectedName(name, r.format), ...(r.stages ? { stages: r.stages } : {}),
        ...(r.floats ? { floats: new Float32Array(r.floats) } : {}), ...(r.plan ? { plan: r.plan } : {}),
        ...(r.input ? { input: new Uint8Array(r.input) } : {}) };
    },
    /** The generator graph alone on a working-size float32 (1,3,h,w) image: for parity tests.
     * seed (32 hex digits): for reproducibility checks only; omit it in real use (a fresh one). */
    async runGenerator(data, h, w, eps, seed) {
      const copy = Float32Array.from(data);
      const r = await call({ type: 'generator', data: copy.buffer, h, w, eps, seed: seed ?? null }, [copy.buffer]);
      return { protected: new Float32Array(r.protected), backend: r.backend };
    },
    close: () => worker.terminate(),
  };
}

/** The models a RID server offers: [{ name, manifest_url, manifest }], manifest URLs absolute. */
export async function listModels(serverUrl = location.origin) {
  const url = new URL('/v1/models', new URL(serverUrl, location.href));
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return (await response.json()).models.map((m) => ({ ...m, manifest_url: new URL(m.manifest_url, url).href }));
}

export { OUTPUT_FORMATS, protectedName } from '../shared/formats.js';
export { MAX_PIXELS, workingSize } from '../shared/pipeline.js';
export { seedCode } from '../shared/seed.js';
