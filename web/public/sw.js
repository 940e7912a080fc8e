// Offline after the first visit. On install, before the page's first visit is over, the service
// worker keeps every file of the build (build.json lists them; Pyodide's, for the optional
// double-check, are left to the network), the model list and manifests, and the API docs with
// their own files: the files the page fetched before the worker existed never passed through it,
// so without this an offline reload failed until a second online visit. Afterwards every
// same-origin GET goes to the network first and its answer is kept; without a network the kept
// answer is used. Photos are never cached (they are POSTed to /v1/protect only in server mode);
// model files are cached by hash by the page's worker itself (worker/models.js).
// The build's hash (build.mjs writes it): a new build is a new service worker, which keeps the new
// build's files and drops the old ones.
const CACHE = 'rid-app-__RID_BUILD__';

/** Same-origin URLs that an HTML page loads (scripts, styles, icons). */
function loadedBy(html, base) {
  const urls = [...html.matchAll(/(?:src|href)\s*=\s*["']([^"']+)["']/g)].map((m) => new URL(m[1], base));
  return urls.filter((u) => u.origin === self.location.origin).map((u) => u.href);
}

async function precache() {
  const cache = await caches.open(CACHE);
  const keep = async (url) => {
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    await cache.put(url, response.clone());
    return response;
  };
  const [build, models, docs] = await Promise.all([
    keep('/build.json').then((r) => r.json()), keep('/v1/models').then((r) => r.json()), keep('/docs').then((r) => r.text()),
    keep('/'), keep('/research/'), keep('/openapi.json')]);
  const files = build.files.filter((f) => !f.startsWith(`${build.pyodide_dir}/`) && f !== 'sw.js').map((f) => `/${f}`);
  const manifests = models.models.map((m) => new URL(m.manifest_url, self.location.origin).href);
  const docFiles = loadedBy(docs, new URL('/docs', self.location.origin));
  await Promise.all([...new Set([...files, ...manifests, ...docFiles])].map(keep));
}

self.addEventListener('install', (event) => event.waitUntil(precache().then(() => self.skipWaiting())));
self.addEventListener('activate', (event) => event.waitUntil((async () => {
  for (const name of await caches.keys()) if (name.startsWith('rid-app-') && name !== CACHE) await caches.delete(name);
  await self.clients.claim();
})()));

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.endsWith('.onnx')) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(event.request);
        // Keeping a copy may fail (storage full): the answer is good all the same.
        if (response.ok) event.waitUntil(cache.put(event.request, response.clone()).catch(() => {}));
        return response;
      } catch (err) {
        // A page asked for with a query (/?verify=1) is the same page.
        const kept = await cache.match(event.request, { ignoreSearch: event.request.mode === 'navigate' });
        if (kept) return kept;
        throw err;
      }
    })(),
  );
});
