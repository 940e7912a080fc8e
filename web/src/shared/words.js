// What a person reads when a photo cannot be protected: plain words for each error code, the same
// for the page, the widget and every backend (the server's codes are the same names).

import { MAX_PIXELS } from './pipeline.js';

const MP = 2 ** 20; // MAX_PIXELS is 64 of these: "64 MP"
const megapixels = (pixels) => `${(pixels / MP).toFixed(pixels < 10 * MP ? 1 : 0)} MP`;

/** The sentence for an error code; `pixels` (W*H) where the photo's size is known. */
export function plainError(code, { pixels = null } = {}) {
  switch (code) {
    case 'empty_file': return 'This file is empty.';
    case 'unsupported_type': return 'This is not a photo we can read (we read JPEG, PNG and WebP).';
    case 'corrupt_image': return 'This is not a photo we can read: the file is damaged or cut short.';
    case 'unsupported_mode': return 'This is not a photo we can read: its colours are stored in a way we do not support.';
    case 'too_many_pixels':
      return `This photo is too large (${pixels ? `${megapixels(pixels)}; ` : ''}the limit is ${megapixels(MAX_PIXELS)}).`;
    case 'alpha_not_supported': return 'This photo has transparent parts, which JPEG cannot keep: choose PNG.';
    case 'alpha_needs_png': return 'This photo has transparent parts, which only PNG keeps exactly here: choose PNG.';
    case 'format_unavailable': return 'This browser cannot write that kind of file exactly: choose PNG.';
    case 'body_too_large': return 'This file is too large to send to the server.';
    case 'rate_limited': case 'overloaded': return 'The server is busy: try again in a minute.';
    default: return null;
  }
}
