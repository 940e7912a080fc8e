// index.html: drop or pick photos, protect them in the worker, compare, download one or all.

import { zipSync } from 'fflate';

import './compare.js';
import { createProtector, listModels, protectedName } from './protector.js';

const $ = (selector) => document.querySelector(selector);
const results = []; // { name, blob }
let protector = null;
let starting = null; // the protector being started: photos chosen meanwhile wait for it
let queue = Promise.resolve();

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
  try {
    const result = await protector.protect(file, { eps: Number($('#eps').value) });
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
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('offline mode unavailable:', err.message));
  starting = showModels().then(startProtector, (err) => say('#backend', `Cannot list models: ${err.message}`, true));
  await starting;
  $('#model').addEventListener('change', start);
  $('#backend-choice').addEventListener('change', start);
  document.body.dataset.ready = 'yes';
}

window.rid = { enqueue, get protector() { return protector; } }; // for tests and the console
main();
