// The verify bridge: the Python pixel policy (ridpixels under Pyodide, in its own worker) checking
// the JavaScript pipeline's results. Nothing is fetched until startVerifier() is called: the
// worker bundle and Pyodide's files (~13 MB) load only in the app's verify mode.

import { tileOrigins, workingSize } from '../shared/pipeline.js';

const VERIFY_URL = new URL(__RID_VERIFY_WORKER__, import.meta.url); // the hashed verify worker (build.mjs)

/**
 * @typedef {{ check: string, ok: boolean|null, js: any, python: any, detail: string }} Check
 *   ok null: not checked (no float output from the server backend).
 * @typedef {{ ok: boolean, checks: Check[], ms: number }} Verdict
 */

/** @returns {{ ready: Promise<object>, check: (job: object) => Promise<Verdict>, close: () => void }}
 * ready: { python (sys.version), pyodide, ridpixels, ridpixels_file, wheel, boot_ms, ready_ms }. */
export function startVerifier() {
  const worker = new Worker(VERIFY_URL, { type: 'module' });
  const pending = new Map();
  let next = 0;
  let ready;
  const started = new Promise((resolve, reject) => (ready = { resolve, reject }));
  worker.onmessage = ({ data }) => {
    if (data.type === 'ready') return ready.resolve(data);
    const job = pending.get(data.id);
    if (data.id === undefined || !job) return ready.reject(new Error(data.message));
    pending.delete(data.id);
    if (data.type === 'error') job.reject(new Error(data.message));
    else job.resolve({ ok: data.checks.every((c) => c.ok !== false), checks: data.checks, ms: data.ms });
  };
  worker.onerror = (event) => ready.reject(new Error(`verify worker failed: ${event.message}`));
  started.catch(() => {}); // reported through `ready` and every check
  return {
    ready: started,
    /** One job (jobOf): its buffers are copied to the worker, never transferred. */
    async check(job) {
      await started;
      const png = job.png instanceof Blob ? await job.png.arrayBuffer() : job.png;
      const file = job.file instanceof Blob ? await job.file.arrayBuffer() : job.file ?? null;
      return new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        const { width, height, spec, tile, eps, plan, input, floats } = job;
        worker.postMessage({ type: 'check', id, width, height, spec, tile, eps, plan, input, floats, file, png });
      });
    },
    close() {
      worker.terminate();
      for (const job of pending.values()) job.reject(new Error('verification stopped'));
      pending.clear();
    },
  };
}

/** A check job from a protector result (protect(file, { float: true, input: true })): the plan and
 * decoded input the worker used; for the server backend (neither comes back) the plan by
 * pipeline.js and the original file, which the verify worker decodes as the worker would. */
export function jobOf(result, manifest, file) {
  const { width, height } = result;
  const spec = manifest.pipeline.working_size;
  const tile = manifest.pipeline.pieces.tile;
  const plan = result.plan ?? { working: workingSize(height, width, spec), origins: tileOrigins(height, width, tile) };
  return { name: result.name, width, height, spec, tile, eps: result.eps, plan, input: result.input ?? null,
    floats: result.floats ?? null, file: result.input ? null : file, png: result.blob };
}

/** A verdict in words for the photo's row. */
export function describe({ ok, checks, ms }) {
  if (!ok) {
    const bad = checks.filter((c) => c.ok === false);
    return `Python differs: ${bad.map((c) => `${c.check}: JS ${JSON.stringify(c.js)}, Python ${JSON.stringify(c.python)} (${c.detail})`).join('; ')}`;
  }
  const by = Object.fromEntries(checks.map((c) => [c.check, c]));
  const parts = [`working size ${by.working_size.python.join('×')}`, by.tile_origins.detail, `max change ${by.bound.python} ≤ ${by.bound.js} levels`,
    by.levels.ok ? `${by.levels.python} values rounded alike` : 'rounding not checked (no float output)'];
  return `Python agrees: ${parts.join(', ')} (${Math.round(ms)} ms)`;
}
