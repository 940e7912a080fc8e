// File bytes -> RGBA pixels by the pipeline's rules: magic bytes decide the type (JPEG, PNG,
// WebP); a file cut short is refused (the browser would show the part it has); EXIF orientation
// is applied; no colour conversion; alpha untouched (read through WebGL, as a 2D canvas would
// premultiply it). Every error carries a code and the plain sentence of shared/words.js.

import { plainError } from '../shared/words.js';

export class ImageError extends Error {
  /** message: the plain sentence for `code` (shared/words.js), else `detail`. */
  constructor(code, detail, facts = {}) {
    super(plainError(code, facts) ?? detail);
    this.code = code;
    this.detail = detail;
  }
}

export function sniff(bytes) {
  const starts = (...sig) => sig.every((v, i) => bytes[i] === v);
  if (starts(0xff, 0xd8, 0xff)) return 'jpeg';
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) return 'webp';
  return null;
}

/** Whether the container ends where it says it does (the decoders would accept a cut file). */
function complete(bytes, kind) {
  const n = bytes.length;
  if (kind === 'jpeg') {
    for (let i = n - 2; i >= Math.max(0, n - 64); i--) if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
    return false;
  }
  if (kind === 'png') {
    const iend = [0x49, 0x45, 0x4e, 0x44];
    for (let i = n - 8; i >= Math.max(0, n - 64); i--) if (iend.every((v, j) => bytes[i + j] === v)) return true;
    return false;
  }
  const riff = bytes[4] | (bytes[5] << 8) | (bytes[6] << 16) | (bytes[7] << 24);
  return riff + 8 <= n;
}

/** { width, height } from the file's header, before any pixel is decoded; null where the header
 * cannot be read (the decoder then judges the file). Orientation does not change W*H. */
function headerSize(bytes, kind) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = (width, height) => ({ width, height });
  if (kind === 'png') return bytes.length >= 24 ? size(view.getUint32(16), view.getUint32(20)) : null;
  if (kind === 'webp') {
    if (bytes.length < 30) return null;
    const chunk = String.fromCharCode(...bytes.subarray(12, 16));
    const u24 = (i) => bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16);
    if (chunk === 'VP8X') return size(1 + u24(24), 1 + u24(27));
    if (chunk === 'VP8L') {
      const b = view.getUint32(21, true);
      return size(1 + (b & 0x3fff), 1 + ((b >>> 14) & 0x3fff));
    }
    if (chunk === 'VP8 ') return size(view.getUint16(26, true) & 0x3fff, view.getUint16(28, true) & 0x3fff);
    return null;
  }
  // JPEG: the first start-of-frame marker (SOF0..SOF15 but DHT C4, JPG C8, DAC CC).
  for (let i = 2; i + 9 < bytes.length;) {
    if (bytes[i] !== 0xff) return null;
    const marker = bytes[i + 1];
    if (marker === 0xff) { i++; continue; }
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) return size(view.getUint16(i + 7), view.getUint16(i + 5));
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
    i += 2 + view.getUint16(i + 2);
  }
  return null;
}

export async function decode(bytes, maxPixels) {
  if (!bytes.length) throw new ImageError('empty_file', 'the file is empty');
  const kind = sniff(bytes);
  if (!kind) throw new ImageError('unsupported_type', 'not a JPEG, PNG or WebP image');
  const claimed = headerSize(bytes, kind);
  if (claimed && claimed.width * claimed.height > maxPixels) {
    throw new ImageError('too_many_pixels', `too many pixels: ${claimed.width}x${claimed.height} > ${maxPixels}`, { pixels: claimed.width * claimed.height });
  }
  if (!complete(bytes, kind)) throw new ImageError('corrupt_image', `truncated ${kind.toUpperCase()} file`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]), { imageOrientation: 'from-image', premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch (err) {
    throw new ImageError('corrupt_image', `the ${kind.toUpperCase()} file cannot be decoded (${err.message})`);
  }
  const { width, height } = bitmap;
  if (width * height > maxPixels) {
    bitmap.close();
    throw new ImageError('too_many_pixels', `too many pixels: ${width}x${height} > ${maxPixels}`, { pixels: width * height });
  }
  let rgba = read2d(bitmap);
  let hasAlpha = false;
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 255) { hasAlpha = true; break; }
  if (hasAlpha) rgba = readExact(bitmap) ?? rgba;
  bitmap.close();
  return { rgba, width, height, hasAlpha };
}

function read2d(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return new Uint8ClampedArray(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer);
}

/** Unpremultiplied RGBA through a WebGL2 texture; null where WebGL2 is missing or too small. */
function readExact(bitmap) {
  const { width, height } = bitmap;
  const gl = new OffscreenCanvas(1, 1).getContext('webgl2');
  if (!gl || width > gl.getParameter(gl.MAX_TEXTURE_SIZE) || height > gl.getParameter(gl.MAX_TEXTURE_SIZE)) return null;
  gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
  gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
  gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
  gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
  gl.bindFramebuffer(gl.FRAMEBUFFER, gl.createFramebuffer());
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, gl.getParameter(gl.TEXTURE_BINDING_2D), 0);
  const out = new Uint8ClampedArray(width * height * 4);
  gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, out);
  return gl.getError() === gl.NO_ERROR ? out : null;
}
