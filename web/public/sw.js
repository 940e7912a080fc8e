// Offline after the first visit: every same-origin GET goes to the network first and its answer
// is kept; without a network the kept answer is used. Photos are never cached (they are POSTed
// to /v1/protect only in server mode); model files are cached by hash by the worker itself.
const CACHE = 'rid-app-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.endsWith('.onnx')) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(event.request);
        if (response.ok) await cache.put(event.request, response.clone());
        return response;
      } catch (err) {
        const kept = await cache.match(event.request);
        if (kept) return kept;
        throw err;
      }
    })(),
  );
});
