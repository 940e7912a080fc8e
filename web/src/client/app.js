// index.html: drop or pick photos, protect them in the worker, compare, download one or all.
// Verify mode (the checkbox, or ?verify=1): every photo is also checked by the Python pixel
// policy under Pyodide (client/verify.js, its own bundle, imported only then); only then is any
// of Pyodide's files fetched. Everything a person reads here is plain words: research detail is
// behind "For researchers" (/research/), never a path, a script or a command line.

import { zipSync } from 'fflate';

import './compare.js';
import { OUTPUT_FORMATS, createProtector, listModels } from './protector.js';

const $ = (selector) => document.querySelector(selector);
const results = new Map(); // row -> { name (the protected copy's file name), blob }
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

/** A file size as people read it: 950 KB, 6.4 MB. */
function sizeInWords(bytes) {
  return bytes < 1e6 ? `${Math.max(1, Math.round(bytes / 1e3))} KB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

/** The models a card says it was trained against: those it names, and how many others. */
function targetsInWords(list = []) {
  const named = list.map((t) => (typeof t === 'object' && t?.name) || null);
  const names = named.filter(Boolean);
  const others = named.length - names.length;
  return [...names, ...(others ? [`${others} small test model${others > 1 ? 's' : ''} made by this project`] : [])].join(', ');
}

/** The model note: the card's two plain sentences first (or that the card has none), a few plain
 * facts under Details, and the research behind "For researchers". */
function describeModel(manifest) {
  const { plain } = manifest;
  $('#model-protects').textContent = plain?.protects ?? `The card of this model (${manifest.name}) does not say, in plain words, what it protects against or what it does not.`;
  $('#model-limits').textContent = plain?.limits ?? 'What the card does say is under Details.';
  const rows = [
    ['Model', `${manifest.name} ${manifest.version ?? ''}`.trim()],
    ['Tested against', targetsInWords(manifest.trained_against) || 'the card does not say'],
    ['Strength', `${manifest.eps_levels} by default: no colour value of a photo changes by more than ${manifest.eps_levels} of its 255 levels`],
  ];
  $('#model-card').replaceChildren(...rows.flatMap(([term, text]) => {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = term;
    dd.textContent = text;
    return [dt, dd];
  }));
  const levels = [...manifest.eps_levels_allowed].sort((a, b) => a - b); // subtle on the left
  const slider = $('#eps');
  slider.max = String(levels.length - 1);
  slider.value = String(Math.max(0, levels.indexOf(manifest.eps_levels)));
  slider.dataset.levels = levels.join(',');
  showStrength();
}

/** The strength in 8-bit levels that the slider stands at. */
function strength() {
  const slider = $('#eps');
  return Number(slider.dataset.levels.split(',')[Number(slider.value)]);
}

function showStrength() {
  const eps = strength();
  $('#eps').setAttribute('aria-valuetext', `${eps} of 255 levels`);
  say('#eps-note', `ε ${eps}/255: no colour value changes by more than ${eps} of its 255 levels`);
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

function onProgress(p) {
  if (p.stage === 'download') showLoading(p);
  else document.querySelector('#photos li[data-active] progress')?.setAttribute('value', p.fraction); // one photo at a time
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
  const choice = $('#backend-choice').value;
  const open = (backend) => createProtector({ manifestUrl, backend, serverUrl: location.origin, onProgress });
  let fellBack = '';
  try {
    try {
      protector = await open(choice);
    } catch (err) {
      // The graphics chip was asked for and cannot start here: the processor does the same work.
      if (choice !== 'webgpu' || err.code === 'integrity') throw err;
      console.warn(`WebGPU did not start: ${err.message}`);
      protector = await open('wasm');
      fellBack = ' The graphics chip could not be used here, so this device’s processor protects them instead.';
    }
    if (!listed) describeModel(protector.manifest);
    const { backend, threads } = protector;
    backendLine.dataset.backend = backend; // tests read these, not the words
    if (threads) backendLine.dataset.threads = String(threads);
    const leaves = backend === 'server' ? ': each photo is uploaded to it and protected there' : '; they do not leave it';
    say('#backend', `Ready. Photos are protected ${where(backend, threads)}${leaves}.${fellBack}`);
  } catch (err) {
    const why = err.code === 'integrity'
      ? 'the model that arrived is not the one its card lists, so it was not used'
      : 'nothing that protects photos could start in this browser; choose “The server” under “Where” to protect them there';
    console.warn(`cannot start: ${err.message}`);
    say('#backend', `Cannot start: ${why}.`, true);
  } finally {
    say('#download', ''); // ready or failed: the loading line has said what it had to
  }
}

/** Verify mode on or off: on starts the verify worker (Pyodide boots meanwhile), off ends it. */
function setVerify(on) {
  $('#format').disabled = on; // the double-check reads the lossless PNG's values
  if (on) $('#format').value = 'png';
  if (!on) {
    verifier?.then(({ worker }) => worker.close(), () => {});
    verifier = null;
    say('#verify-status', '');
    return;
  }
  if (verifier) return;
  say('#verify-status', 'Loading Python for the double-check (about 13 MB)…');
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
  $('#clear').disabled = false;
  return row;
}

async function protectOne(file, row) {
  const status = row.querySelector('.status');
  status.textContent = 'protecting…';
  const v = verifier; // this photo is verified if verify mode was on when it started
  const { manifest } = protector;
  row.dataset.active = 'yes';
  try {
    const result = await protector.protect(file, { eps: strength(), format: $('#format').value, ...(v ? { float: true, input: true } : {}) });
    if (!row.isConnected) return; // the list was cleared meanwhile
    const name = result.fileName;
    results.set(row, { name, blob: result.blob });
    row.querySelector('progress').value = 1;
    status.textContent = `done: ${result.width}×${result.height} pixels, ${Math.round(result.ms)} ms ${where(result.backend)}`;
    row.classList.add('done');
    row.dataset.backend = result.backend;
    row.dataset.bytes = String(result.blob.size);
    row.dataset.doneAt = String(performance.now()); // ms since navigation: the cold-start benchmark reads it
    const link = document.createElement('a');
    link.href = URL.createObjectURL(result.blob);
    link.download = name;
    link.textContent = `Download ${name}`;
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = ` (${sizeInWords(result.blob.size)})`;
    const show = document.createElement('button');
    show.type = 'button';
    show.textContent = 'Compare';
    show.addEventListener('click', () => compare(file, result.blob, result.eps));
    row.querySelector('.actions').append(link, size, ' ', show);
    $('#download-all').disabled = false;
    if (results.size === 1) compare(file, result.blob, result.eps);
    say('#last', `Last photo: ${Math.round(result.ms)} ms ${where(result.backend)}`);
    if (v) verifyOne(v, file, result, manifest, row); // beside the next photo's protection, in its own worker
  } catch (err) {
    row.classList.add('failed');
    row.dataset.code = err.code ?? 'failed';
    // The worker's photo errors are plain sentences (shared/words.js); anything else is ours.
    status.textContent = err.code && err.code !== 'failed' ? err.message : `Something went wrong while protecting this photo (${err.message}).`;
    status.classList.add('error');
  } finally {
    delete row.dataset.active;
  }
}

function enqueue(files) {
  for (const file of files) {
    const row = addRow(file);
    queue = queue.then(async () => {
      await starting;
      if (!row.isConnected) return;
      if (protector) return protectOne(file, row);
      row.classList.add('failed');
      row.querySelector('.status').textContent = 'Not protected: the protection could not start (see above).';
    });
  }
  return queue;
}

function clearList() {
  for (const row of $('#photos').children) row.querySelector('a[download]') && URL.revokeObjectURL(row.querySelector('a[download]').href);
  $('#photos').replaceChildren();
  results.clear();
  $('#download-all').disabled = true;
  $('#clear').disabled = true;
  $('rid-compare').hidden = true;
  say('#last', '');
}

async function downloadAll() {
  const entries = {};
  for (const { name, blob } of results.values()) {
    let unique = name;
    const dot = name.lastIndexOf('.');
    for (let i = 2; unique in entries; i++) unique = `${name.slice(0, dot)} (${i})${name.slice(dot)}`;
    entries[unique] = new Uint8Array(await blob.arrayBuffer());
  }
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([zipSync(entries, { level: 0 })], { type: 'application/zip' })); // the files are compressed already
  link.download = 'protected-photos.zip';
  link.click();
}

async function showModels() {
  models = await listModels();
  $('#model').replaceChildren(...models.map((m) => new Option(m.name, m.manifest_url)));
}

function showFormats() {
  const words = { png: 'PNG: exact, larger file', jpeg: 'JPEG: smaller file, for upload forms with size limits', webp: 'WebP: exact, smaller than PNG' };
  $('#format').replaceChildren(...Object.keys(OUTPUT_FORMATS).map((f) => new Option(words[f] ?? f, f, f === 'png', f === 'png')));
}

async function main() {
  showFormats();
  // Photos may be chosen at once; they wait for the model (enqueue awaits `starting`).
  const input = $('#files');
  input.addEventListener('change', () => {
    enqueue([...input.files]);
    input.value = ''; // choosing the same file again is a new choice
  });
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); enqueue([...e.dataTransfer.files]); });
  $('#download-all').addEventListener('click', downloadAll);
  $('#clear').addEventListener('click', clearList);
  $('#eps').addEventListener('input', showStrength);
  const verify = $('#verify');
  verify.checked ||= new URLSearchParams(location.search).get('verify') === '1';
  verify.addEventListener('change', () => setVerify(verify.checked));
  setVerify(verify.checked);
  starting = showModels().then(startProtector, (err) => {
    console.warn(`cannot list models: ${err.message}`);
    say('#backend', 'Cannot start: the list of protection models could not be loaded. Reload the page to try again.', true);
  });
  await starting;
  // Offline use: registered once the model is ready, so that keeping the app's files for later
  // does not slow the first photo's model download.
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('offline mode unavailable:', err.message));
    navigator.serviceWorker.ready.then(() => say('#offline', 'This page now works without a network too, on this device.'));
  }
  $('#model').addEventListener('change', start);
  $('#backend-choice').addEventListener('change', start);
  document.body.dataset.ready = 'yes';
}

window.rid = { enqueue, clear: clearList, get protector() { return protector; } }; // for tests and the console
// Verify mode's results, and the bridge itself (tests check altered jobs through it).
window.ridVerify = { results: verdicts, get verifier() { return verifier; } };
main();
