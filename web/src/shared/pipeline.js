// The browser's side of the canonical pixel pipeline (ridtrain/pixels.py, ridexport/tiles.py).
// Only integer geometry and the 8-bit rule live here; the resizes run in the export's own
// shrink.onnx and apply.onnx. tests/test_browser.py holds every function here to Python's.

/** The decoder's limit on W*H, checked in the header before any pixel is decoded: ridtrain.pixels.MAX_PIXELS. */
export const MAX_PIXELS = 64 * 2 ** 20;

/** (hw, ww) the generator sees: ridtrain.pixels.working_size, integer arithmetic only. */
export function workingSize(h, w, { side = 512, multiple = 16, max_long = 2048 } = {}) {
  const short = Math.min(h, w);
  const cap = Math.max(multiple, Math.floor((2 * max_long + multiple) / (2 * multiple)) * multiple);
  const scale = (dim) =>
    Math.min(cap, Math.max(multiple, Math.floor((2 * dim * side + short * multiple) / (2 * short * multiple)) * multiple));
  return [scale(h), scale(w)];
}

/** Top-left corners of the tiles, row-major: the order in which shrink parts are added. */
export function tileOrigins(h, w, tile) {
  const out = [];
  for (let r = 0; r < h; r += tile) for (let c = 0; c < w; c += tile) out.push([r, c]);
  return out;
}

/** RGBA bytes (H*W*4) -> float32 (1,3,h,w) tile in [0,1]: v / 255, as Python's to_float. The
 * quotient is rounded once to double, then to float32, which equals float32 division. */
export function tileToFloat(rgba, width, r, c, th, tw) {
  const plane = th * tw;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < th; y++) {
    let src = ((r + y) * width + c) * 4;
    const row = y * tw;
    for (let x = 0; x < tw; x++, src += 4) {
      out[row + x] = rgba[src] / 255;
      out[plane + row + x] = rgba[src + 1] / 255;
      out[2 * plane + row + x] = rgba[src + 2] / 255;
    }
  }
  return out;
}

/** The 8-bit rule: rint(float32(x * 255)), half to even, clamped: Uint8ClampedArray rounds half
 * to even, and Math.fround makes the product a float32 as in Python (Math.round would not do). */
export function writeTile8(out, width, protectedTile, r, c, th, tw) {
  const plane = th * tw;
  for (let y = 0; y < th; y++) {
    let dst = ((r + y) * width + c) * 4;
    const row = y * tw;
    for (let x = 0; x < tw; x++, dst += 4) {
      out[dst] = Math.fround(protectedTile[row + x] * 255);
      out[dst + 1] = Math.fround(protectedTile[plane + row + x] * 255);
      out[dst + 2] = Math.fround(protectedTile[2 * plane + row + x] * 255);
    }
  }
}

/** x_work[:, :, pr:pr+k, pc:pc+m] += part, in float32 (JS adds in double, then rounds once: the
 * float32 sum). */
export function addPart(xWork, hw, ww, part, k, m, pr, pc) {
  for (let ch = 0; ch < 3; ch++) {
    for (let y = 0; y < k; y++) {
      const dst = (ch * hw + pr + y) * ww + pc;
      const src = (ch * k + y) * m;
      for (let x = 0; x < m; x++) xWork[dst + x] += part[src + x];
    }
  }
}
