// PNG encoding close to Pillow's optimised PNG at the speed of the unfiltered encoder it replaces
// (fast-png, which wrote every row unfiltered: 1.5x Pillow's size). Each row gets the filter (none,
// sub, up, average, Paeth) whose output has the smallest sum of absolute values, as libpng and
// Pillow choose; fflate deflates the rows at level 1. On a protected 512² photo in Chromium
// (2026-12-08): filters 13 ms + level 1 21 ms = 34 ms for 1.07x Pillow's optimised size, against
// fast-png's 33 ms for 1.52x; level 6 took 61 ms for 1.03x, the browser's CompressionStream 60 ms
// for 1.025x. Pure JavaScript, so every browser writes the same bytes. Returns exactly the
// file's bytes (a buffer of its own, to transfer).

import { zlibSync } from 'fflate';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const LEVEL = 1;

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Rows of `pixels` (height rows of width * channels bytes), each prefixed by its filter type. */
function filterRows(pixels, width, height, channels) {
  const stride = width * channels;
  const out = new Uint8Array(height * (stride + 1));
  const candidates = Array.from({ length: 5 }, () => new Uint8Array(stride));
  const [f0, f1, f2, f3, f4] = candidates;
  const zero = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const cur = pixels.subarray(y * stride, (y + 1) * stride);
    const up = y ? pixels.subarray((y - 1) * stride, y * stride) : zero;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    for (let i = 0; i < stride; i++) {
      const x = cur[i], b = up[i];
      const a = i >= channels ? cur[i - channels] : 0, c = i >= channels ? up[i - channels] : 0;
      const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
      const paeth = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      const v1 = (x - a) & 255, v2 = (x - b) & 255, v3 = (x - ((a + b) >> 1)) & 255, v4 = (x - paeth) & 255;
      f0[i] = x; f1[i] = v1; f2[i] = v2; f3[i] = v3; f4[i] = v4;
      // the sum of each byte read as signed: libpng's heuristic
      s0 += x < 128 ? x : 256 - x; s1 += v1 < 128 ? v1 : 256 - v1; s2 += v2 < 128 ? v2 : 256 - v2;
      s3 += v3 < 128 ? v3 : 256 - v3; s4 += v4 < 128 ? v4 : 256 - v4;
    }
    const sums = [s0, s1, s2, s3, s4];
    let best = 0;
    for (let t = 1; t < 5; t++) if (sums[t] < sums[best]) best = t;
    out[y * (stride + 1)] = best;
    out.set(candidates[best], y * (stride + 1) + 1);
  }
  return out;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** An 8-bit RGB (channels 3) or RGBA (channels 4) PNG of `pixels`, row-major. */
export function encodePng(pixels, width, height, channels) {
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, channels === 4 ? 6 : 2, 0, 0, 0], 8); // bit depth, colour type, deflate, adaptive filters, no interlace
  const parts = [Uint8Array.from(SIGNATURE), chunk('IHDR', header),
    chunk('IDAT', zlibSync(filterRows(pixels, width, height, channels), { level: LEVEL })), chunk('IEND', new Uint8Array(0))];
  const file = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    file.set(p, at);
    at += p.length;
  }
  return file;
}
