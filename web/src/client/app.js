// index.html: drop or pick photos, protect them in the worker, compare, download one or all.
// Verify mode (the checkbox, or ?verify=1): every photo is also checked by the Python pixel
// policy under Pyodide (client/verify.js, its own bundle, imported only then); only then is any
// of Pyodide's files fetched.

import { zipSync } from 'fflate';

import './compare.js';
import { createProtector, listModels, protectedName } from './protector.js';

const $ = (selector) => document.querySelector(selector);
const results = []; // { name, blob }
let models = []; // listModels(): [{ name, manifest_url, manifest }]
let protector = null;
let starting = null; // the protector being started: photos chosen meanwhile wait for it
let queue = Promise.resolve();
const VERIFY_BRIDGE = new URL(__RID_VERIFY_BRIDGE__, import.meta.url).href; // client/verify.js (build.mjs)
let verifier = null; // verify mode: a promise of { bridge (client/verify.js), worker (its startVerifier()) }
const verdicts = []; // { name, ok, checks, ms }: window.ridVerify.results

function say(selector, text, error = false) {
  const el = $(selector);
  el.textContent = text;
  el.classList.toggle('error', error);
}

/** Where photos are protected, in words; the backend's own name (WebGPU, WASM) stays in brackets. */
function where(backend, threads = null) {
  const how = threads ? `, ${threads} thread${threads > 1 ? 's' : ''}` : '';
  return { webgpu: `on this device (WebGPU${how})`, wasm: `on this device (WASM${how})`, server: 'on the server' }[backend] ?? `on ${backend}`;
}

/** The models a card says it was trained against, by kind, named without their paths. */
function targetsInWords(list = []) {
  const kinds = new Map();
  for (const t of list) {
    const entry = typeof t === 'string' ? { path: t } : (t ?? {});
    const name = entry.name ?? String(entry.path ?? '').split(/[\\/]/).filter(Boolean).pop();
    const kind = entry.kind ?? 'of a kind the card does not state';
    kinds.set(kind, [...(kinds.get(kind) ?? []), name ?? '?']);
  }
  return [...kinds].map(([kind, names]) => `${names.length} × ${kind}: ${names.join(', ')}`).join('; ');
}

/** The model note: the card's two plain sentences first (or that the card has none), the rest of
 * the card under Details. Never a repository path: those mean nothing to the person here. */
function describeModel(manifest) {
  const { plain } = manifest;
  $('#model-protects').textContent = plain?.protects ?? `The card of this model (${manifest.name}) does not say, in plain words, what it protects against or what it does not.`;
  $('#model-limits').textContent = plain?.limits ?? 'What the card does say is under Details.';
  const rows = [
    ['Model', `${manifest.name} ${manifest.version ?? ''}`.trim()],
    ['About', manifest.notes || 'The card has no notes.'],
    ['Trained against', targetsInWords(manifest.trained_against) || 'not stated'],
    ['Training photos', manifest.training_data || 'not stated'],
    ['Strength ε', `${manifest.eps_levels}/255 by default: no pixel value changes by more than ${manifest.eps_levels} levels of 255`],
  ];
  $('#model-card').replaceChildren(...rows.flatMap(([term, text]) => {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = term;
    dd.textContent = text;
    return [dt, dd];
  }));
  const eps = $('#eps');
  eps.replaceChildren(...manifest.eps_levels_allowed.map((v) => new Option(`${v}/255`, v, false, v === manifest.eps_levels)));
}

/** One line while the model loads (all its files together, in MB); none once it is ready. */
function showLoading(p) {
  const mb = (bytes) => (bytes / 1e6).toFixed(1);
  if (p.cached) return say('#download', `Loading the protection model… ${mb(p.modelTotal)} MB, kept on this device from an earlier visit`);
  say('#download', `Loading the protection model… ${p.modelLoaded < p.modelTotal ? `${mb(p.modelLoaded)} of ` : ''}${mb(p.modelTotal)} MB`);
}

function start() {
  starting = startProtector();
  return starting;
}

async function startProtector() {
  protector?.close();
  protector = null;
  say('#backend', 'Starting…');
  const backendLine = $('#backend');
  delete backendLine.dataset.backend;
  delete backendLine.dataset.threads;
  const manifestUrl = $('#model').value;
  const listed = models.find((m) => m.manifest_url === manifestUrl);
  if (listed) describeModel(listed.manifest); // the card before the model's files arrive
  try {
    protector = await createProtector({
      manifestUrl,
      backend: $('#backend-choice').value,
      serverUrl: location.origin,
      onProgress: (p) => {
        if (p.stage === 'download') showLoading(p);
        else document.querySelector(`[data-name="${CSS.escape(p.name)}"] progress`)?.setAttribute('value', p.fraction);
      },
    });
    if (!listed) describeModel(protector.manifest);
    const { backend, threads } = protector;
    backendLine.dataset.backend = backend; // tests read these, not the words
    if (threads) backendLine.dataset.threads = String(threads);
    const leaves = backend === 'server' ? ': each photo is uploaded to it and protected there' : '; they do not leave it';
    const after = protector.log.length ? ` (the other ways did not start: ${protector.log.join('; ')})` : '';
    say('#backend', `Ready. Photos are protected ${where(backend, threads)}${leaves}.${after}`);
  } catch (err) {
    const why = err.code === 'integrity' ? 'the model that arrived is not the one its card lists, so it was not used' : 'nothing that protects photos could start here';
    say('#backend', `Cannot start: ${why} (${err.message})`, true);
  } finally {
    say('#download', ''); // ready or failed: the loading line has said what it had to
  }
}

/** Verify mode on or off: on starts the verify worker (Pyodide boots meanwhile), off ends it. */
function setVerify(on) {
  if (!on) {
    verifier?.then(({ worker }) => worker.close(), () => {});
    verifier = null;
    say('#verify-status', '');
    return;
  }
  if (verifier) return;
  say('#verify-status', 'Loading Python for the double-check (Pyodide, about 13 MB)…');
  const v = import(VERIFY_BRIDGE).then((bridge) => ({ bridge, worker: bridge.startVerifier() }));
  verifier = v;
  v.then(({ worker }) => worker.ready).then((info) => {
    if (verifier !== v) return;
    say('#verify-status', `Double-checking each photo with Python ${info.python.split(' ')[0]} (Pyodide ${info.pyodide}, ridpixels ${info.ridpixels}), ready in ${Math.round(info.ready_ms)} ms`);
    document.body.dataset.verifyReady = 'yes';
  }, (err) => verifier === v && say('#verify-status', `Cannot double-check: ${err.message}`, true));
}

/** One protected photo checked by Python; the verdict goes in its row and in window.ridVerify. */
async function verifyOne(v, file, result, manifest, row) {
  row.dataset.verify = 'pending';
  const line = document.createElement('div');
  line.className = 'verify';
  line.textContent = 'double-checking with Python…';
  row.append(line);
  try {
    const { bridge, worker } = await v;
    const verdict = await worker.check(bridge.jobOf(result, manifest, file));
    verdicts.push({ name: file.name, ...verdict });
    line.textContent = bridge.describe(verdict);
    line.classList.toggle('error', !verdict.ok);
    row.dataset.verify = verdict.ok ? 'ok' : 'differs';
  } catch (err) {
    verdicts.push({ name: file.name, ok: false, error: err.message, checks: [] });
    line.textContent = `cannot double-check: ${err.message}`;
    line.classList.add('error');
    row.dataset.verify = 'error';
  }
}

/** The before/after view, shown from the first protected photo on. */
function compare(original, protectedBlob, eps) {
  const view = $('rid-compare');
  view.hidden = false;
  return view.show(original, protectedBlob, eps);
}

function addRow(file) {
  const row = document.createElement('li');
  row.dataset.name = file.name;
  row.innerHTML = '<span class="name"></span> <progress max="1" value="0"></progress> <span class="status" role="status">waiting</span> <span class="actions"></span>';
  row.querySelector('.name').textContent = file.name;
  $('#photos').append(row);
  return row;
}

async function protectOne(file, row) {
  const status = row.querySelector('.status');
  status.textContent = 'protecting…';
  const v = verifier; // this photo is verified if verify mode was on when it started
  const { manifest } = protector;
  try {
    const result = await protector.protect(file, { eps: Number($('#eps').value), ...(v ? { float: true, input: true } : {}) });
    const name = protectedName(file.name);
    results.push({ name, blob: result.blob });
    row.querySelector('progress').value = 1;
    status.textContent = `done: ${result.width}×${result.height} pixels, ${Math.round(result.ms)} ms ${where(result.backend)}`;
    row.classList.add('done');
    row.dataset.backend = result.backend;
    row.dataset.doneAt = String(performance.now()); // ms since navigation: the cold-start benchmark reads it
    const link = document.createElement('a');
    link.href = URL.createObjectURL(result.blob);
    link.download = name;
    link.textContent = `Download ${name}`;
    const show = document.createElement('button');
    show.type = 'button';
    show.textContent = 'Compare';
    show.addEventListener('click', () => compare(file, result.blob, result.eps));
    row.querySelector('.actions').append(link, ' ', show);
    $('#download-all').disabled = false;
    if (results.length === 1) compare(file, result.blob, result.eps);
    say('#last', `Last photo: ${Math.round(result.ms)} ms ${where(result.backend)}`);
    if (v) verifyOne(v, file, result, manifest, row); // beside the next photo's protection, in its own worker
  } catch (err) {
    row.classList.add('failed');
    status.textContent = `error: ${err.message}`;
    status.classList.add('error');
  }
}

function enqueue(files) {
  for (const file of files) {
    const row = addRow(file);
    queue = queue.then(async () => {
      await starting;
      if (protector) return protectOne(file, row);
      row.classList.add('failed');
      row.querySelector('.status').textContent = 'error: the protection could not start (see above)';
    });
  }
  return queue;
}

async function downloadAll() {
  const entries = {};
  for (const { name, blob } of results) {
    let unique = name;
    for (let i = 2; unique in entries; i++) unique = name.replace(/\.png$/, ` (${i}).png`);
    entries[unique] = new Uint8Array(await blob.arrayBuffer());
  }
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([zipSync(entries, { level: 0 })], { type: 'application/zip' })); // PNGs do not compress further
  link.download = 'protected-photos.zip';
  link.click();
}

async function showModels() {
  models = await listModels();
  $('#model').replaceChildren(...models.map((m) => new Option(`${m.name} (ε ${m.manifest.eps_levels}/255)`, m.manifest_url)));
}

async function main() {
  // Photos may be chosen at once; they wait for the model (enqueue awaits `starting`).
  $('#files').addEventListener('change', (e) => enqueue([...e.target.files]));
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); enqueue([...e.dataTransfer.files]); });
  $('#download-all').addEventListener('click', downloadAll);
  const verify = $('#verify');
  verify.checked ||= new URLSearchParams(location.search).get('verify') === '1';
  verify.addEventListener('change', () => setVerify(verify.checked));
  setVerify(verify.checked);
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('offline mode unavailable:', err.message));
  starting = showModels().then(startProtector, (err) => say('#backend', `Cannot list models: ${err.message}`, true));
  await starting;
  $('#model').addEventListener('change', start);
  $('#backend-choice').addEventListener('change', start);
  document.body.dataset.ready = 'yes';
}

window.rid = { enqueue, get protector() { return protector; } }; // for tests and the console
// Verify mode's results, and the bridge itself (tests check altered jobs through it).
window.ridVerify = { results: verdicts, get verifier() { return verifier; } };
main();
