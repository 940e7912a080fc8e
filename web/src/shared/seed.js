// The browser's copy of the seed rule (ridtrain/defender/seeds.py; the manifest's `seed` block names it).
// A randomised generator takes, beside the photo, a `code` of code_dim float32 values in (-1, 1).
// Each protection draws a fresh 16-byte seed from the CSPRNG and expands it:
//
//   stream = SHA-256(DOMAIN || seed || be32(0)) || SHA-256(DOMAIN || seed || be32(1)) || ...
//   u_i    = big-endian uint16 of stream[2i : 2i+2]
//   code_i = (2 u_i + 1) / 65536 - 1          (exact in float32)
//
// The seed is never stored, logged or sent anywhere; a given seed is for reproducibility checks
// only. tests/test_browser.py holds seedCode to Python's seed_code bit for bit.

export const SEED_BYTES = 16;
export const SEED_RULE = 'sha256-counter-uint16-v1';
export const SEED_DOMAIN = 'rid-code-v1';

class SeedError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** A fresh seed from the CSPRNG: draw one per protection and do not keep it. */
export function newSeed() {
  return crypto.getRandomValues(new Uint8Array(SEED_BYTES));
}

/** A given seed: 32 hex digits (or the 16 bytes themselves) -> Uint8Array(16); throws (code 'bad_seed'). */
export function parseSeed(seed) {
  if (seed instanceof Uint8Array) {
    if (seed.length !== SEED_BYTES) throw new SeedError('bad_seed', `a seed is ${SEED_BYTES} bytes, got ${seed.length}`);
    return Uint8Array.from(seed);
  }
  const text = typeof seed === 'string' ? seed.trim() : null;
  if (text === null || !/^[0-9a-fA-F]*$/.test(text) || text.length !== 2 * SEED_BYTES) {
    throw new SeedError('bad_seed', `a seed is ${2 * SEED_BYTES} hex digits, got ${JSON.stringify(String(seed)).slice(0, 80)}`);
  }
  const out = new Uint8Array(SEED_BYTES);
  for (let i = 0; i < SEED_BYTES; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** 32 lower-case hex digits of a seed (what the server's `seed` form field takes). */
export function seedHex(seed) {
  return Array.from(parseSeed(seed), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** code_i = (2 u_i + 1) / 65536 - 1 for the big-endian uint16s of `bytes` (2*dim of them). */
function codeFromBytes(bytes, dim) {
  const code = new Float32Array(dim);
  for (let i = 0; i < dim; i++) code[i] = (2 * ((bytes[2 * i] << 8) | bytes[2 * i + 1]) + 1) / 65536 - 1;
  return code;
}

/** The generator's code for a seed: Float32Array(dim) in (-1, 1), by the rule above. Needs
 * crypto.subtle (a secure context: https or localhost; also inside workers). */
export async function seedCode(seed, dim, domain = SEED_DOMAIN) {
  if (!Number.isInteger(dim) || dim < 1) throw new SeedError('bad_seed', `code_dim must be a positive integer, got ${dim}`);
  const bytes = parseSeed(seed);
  if (!globalThis.crypto?.subtle) throw new SeedError('seed_unavailable', 'a given seed needs crypto.subtle (a secure context: https or localhost)');
  const prefix = new TextEncoder().encode(domain);
  const message = new Uint8Array(prefix.length + SEED_BYTES + 4);
  message.set(prefix, 0);
  message.set(bytes, prefix.length);
  const counterAt = prefix.length + SEED_BYTES;
  const blocks = Math.ceil((2 * dim) / 32);
  const stream = new Uint8Array(32 * blocks);
  for (let counter = 0; counter < blocks; counter++) {
    new DataView(message.buffer).setUint32(counterAt, counter, false); // be32(counter)
    stream.set(new Uint8Array(await crypto.subtle.digest('SHA-256', message)), 32 * counter);
  }
  message.fill(0);
  bytes.fill(0);
  return codeFromBytes(stream, dim);
}

/** The manifest's seed block checked: { dim, domain } for a randomised generator, null for a
 * deterministic one (no `seed`, or null); throws on a rule this code does not implement. */
export function seedSpec(manifest) {
  const spec = manifest?.seed;
  if (spec === undefined || spec === null) return null;
  if (spec.rule !== SEED_RULE || spec.bytes !== SEED_BYTES || !Number.isInteger(spec.code_dim) || spec.code_dim < 1 || typeof spec.domain !== 'string') {
    throw new Error(`the manifest's seed rule ${JSON.stringify(spec)} is not one this app implements (${SEED_RULE}, ${SEED_BYTES} bytes)`);
  }
  return { dim: spec.code_dim, domain: spec.domain };
}

/** The code for one protection: of a given seed (reproducibility checks only), else of a fresh
 * CSPRNG seed that is dropped at once. Without crypto.subtle (an insecure http page) a fresh code
 * draws its 2*dim bytes straight from crypto.getRandomValues (the same distribution, no seed),
 * and a given seed is an error: it is never silently ignored. */
export async function drawCode(spec, seed = null) {
  if (seed !== null && seed !== undefined) return seedCode(seed, spec.dim, spec.domain);
  if (!globalThis.crypto?.subtle) return codeFromBytes(crypto.getRandomValues(new Uint8Array(2 * spec.dim)), spec.dim);
  const fresh = newSeed();
  try {
    return await seedCode(fresh, spec.dim, spec.domain);
  } finally {
    fresh.fill(0);
  }
}
