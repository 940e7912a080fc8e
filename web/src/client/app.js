// index.html: drop or pick photos, protect them in the worker, compare, download one or all.
// Verify mode (the checkbox, or ?verify=1): every photo is also checked by the Python pixel
// policy under Pyodide (client/verify.js, its own bundle, imported only then); only then is any
// of Pyodide's files fetched.

import { zipSync } from 'fflate';

import './compare.js';
import { createProtector, listModels, protectedName } from './protector.js';

const $ = (selector) => document.querySelector(selector);
const results = []; // { name, blob }
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

function describeModel(manifest) {
  const against = (manifest.trained_against ?? []).map((t) => t.path ?? t.name ?? JSON.stringify(t)).join(', ') || 'not stated';
  $('#model-note').textContent = `${manifest.name}: ${manifest.notes || 'no model card'} Trained against: ${against}.`;
  const eps = $('#eps');
  eps.replaceChildren(...manifest.eps_levels_allowed.map((v) => new Option(`${v}/255`, v, false, v === manifest.eps_levels)));
}

function start() {
  starting = startProtector();
  return starting;
}

async function startProtector() {
  protector?.close();
  protector = null;
  say('#backend', 'Starting…');
  const manifestUrl = $('#model').value;
  try {
    protector = await createProtector({
      manifestUrl,
      backend: $('#backend-choice').value,
      serverUrl: location.origin,
      onProgress: (p) => {
        if (p.stage === 'download') say('#download', p.cached ? `${p.file}: from cache` : `${p.file}: ${Math.round((100 * p.loaded) / (p.total || 1))} %`);
        else document.querySelector(`[data-name="${CSS.escape(p.name)}"] progress`)?.setAttribute('value', p.fraction);
      },
    });
    describeModel(protector.manifest);
    const threads = protector.threads ? `, ${protector.threads} thread${protector.threads > 1 ? 's' : ''}` : '';
    say('#backend', `Backend: ${protector.backend}${threads}${protector.log.length ? ` (after: ${protector.log.join('; ')})` : ''}`);
  } catch (err) {
    say('#backend', `Cannot start: ${err.message}`, true);
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
  say('#verify-status', 'Loading Pyodide and the Python pixel policy…');
  const v = import(VERIFY_BRIDGE).then((bridge) => ({ bridge, worker: bridge.startVerifier() }));
  verifier = v;
  v.then(({ worker }) => worker.ready).then((info) => {
    if (verifier !== v) return;
    say('#verify-status', `Verifying with ridpixels ${info.ridpixels} on Python ${info.python.split(' ')[0]} (Pyodide ${info.pyodide}), ready in ${Math.round(info.ready_ms)} ms`);
    document.body.dataset.verifyReady = 'yes';
  }, (err) => verifier === v && say('#verify-status', `Cannot verify: ${err.message}`, true));
}

/** One protected photo checked by Python; the verdict goes in its row and in window.ridVerify. */
async function verifyOne(v, file, result, manifest, row) {
  row.dataset.verify = 'pending';
  const line = document.createElement('div');
  line.className = 'verify';
  line.textContent = 'verifying with Python…';
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
    line.textContent = `cannot verify: ${err.message}`;
    line.classList.add('error');
    row.dataset.verify = 'error';
  }
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
    status.textContent = `done: ${result.width}×${result.height}, ${Math.round(result.ms)} ms on ${result.backend}`;
    row.classList.add('done');
    row.dataset.doneAt = String(performance.now()); // ms since navigation: the cold-start benchmark reads it
    const link = document.createElement('a');
    link.href = URL.createObjectURL(result.blob);
    link.download = name;
    link.textContent = `Download ${name}`;
    const show = document.createElement('button');
    show.type = 'button';
    show.textContent = 'Compare';
    show.addEventListener('click', () => $('rid-compare').show(file, result.blob, result.eps));
    row.querySelector('.actions').append(link, ' ', show);
    $('#download-all').disabled = false;
    if (results.length === 1) $('rid-compare').show(file, result.blob, result.eps);
    say('#last', `Last photo: ${Math.round(result.ms)} ms on ${result.backend}`);
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
      row.querySelector('.status').textContent = 'error: no backend could start (see above)';
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
  const models = await listModels();
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
