// The output formats a person may choose, and the protected copy's name: ridpixels.OUTPUT_FORMATS
// and ridpixels.protected_name, mirrored (tests/test_web_page.py holds them equal). PNG and WebP are
// lossless; JPEG is the smaller file for upload forms with size limits.

export const OUTPUT_FORMATS = {
  png: { extension: 'png', media_type: 'image/png', lossless: true },
  jpeg: { extension: 'jpg', media_type: 'image/jpeg', lossless: false, quality: 90 },
  webp: { extension: 'webp', media_type: 'image/webp', lossless: true },
};

/** A file name without its folder and its extension ('photo' when nothing is left). */
export function stemOf(name) {
  const base = String(name).replaceAll('\\', '/').split('/').pop();
  const dot = base.lastIndexOf('.');
  return (dot > 0 ? base.slice(0, dot) : base) || 'photo';
}

/** NAME.protected.EXT: never mistaken for (or saved over) the original. */
export function protectedName(name, format = 'png') {
  const spec = OUTPUT_FORMATS[format];
  if (!spec) throw new Error(`unknown format ${format}; choose one of ${Object.keys(OUTPUT_FORMATS).join(', ')}`);
  return `${stemOf(name)}.protected.${spec.extension}`;
}
