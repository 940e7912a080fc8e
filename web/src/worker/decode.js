// File bytes -> RGBA pixels by the pipeline's rules: magic bytes decide the type (JPEG, PNG,
// WebP); a file cut short is refused (the browser would show the part it has); EXIF orientation
// is applied; no colour conversion; alpha untouched (read through WebGL, as a 2D canvas would
// premultiply it).

export class ImageError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
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

export async function decode(bytes, maxPixels) {
  const kind = sniff(bytes);
  if (!kind) throw new ImageError('unsupported_type', 'not a JPEG, PNG or WebP image');
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
    throw new ImageError('too_many_pixels', `too many pixels: ${width}x${height} > ${(maxPixels / 1e6).toFixed(1)} MP`);
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
