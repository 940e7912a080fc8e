// Model files: fetched with progress, checked against the manifest's sha256 before any session
// sees them, and kept in Cache Storage keyed by that hash, so a second visit downloads nothing.

const CACHE = 'rid-models-v1';

export class IntegrityError extends Error {
  constructor(message) {
    super(message);
    this.code = 'integrity';
  }
}

export async function loadManifest(manifestUrl) {
  const response = await fetch(manifestUrl, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`manifest ${manifestUrl}: HTTP ${response.status}`);
  return response.json();
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function download(url, expectedBytes, onProgress) {
  const response = await fetch(url, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress?.(loaded, expectedBytes);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/** The bytes of one file the manifest lists, verified: from the cache by hash, else downloaded. */
export async function loadVerified(manifestUrl, manifest, name, onProgress) {
  const entry = manifest.files[name];
  if (!entry) throw new Error(`${name} is not in the manifest`);
  const key = new URL(`/__rid-model/${entry.sha256}`, manifestUrl).href;
  const cache = self.caches ? await caches.open(CACHE) : null;
  const hit = cache && (await cache.match(key));
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if (hex(await crypto.subtle.digest('SHA-256', bytes)) === entry.sha256) {
      onProgress?.(bytes.length, bytes.length, true);
      return bytes;
    }
    await cache.delete(key); // a damaged cache entry: fetch again
  }
  const bytes = await download(new URL(name, manifestUrl).href, entry.bytes, onProgress);
  const digest = hex(await crypto.subtle.digest('SHA-256', bytes));
  if (digest !== entry.sha256) {
    throw new IntegrityError(`${name}: sha256 ${digest.slice(0, 12)}… does not match the manifest's ${entry.sha256.slice(0, 12)}…; refusing to run it`);
  }
  await cache?.put(key, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
  return bytes;
}
