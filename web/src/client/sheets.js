// Shadow-root styles as constructed sheets, not <style> elements: the app's CSP allows no inline
// styles, and CSSOM-built sheets are not inline.
const sheets = new Map();

export function sheetOf(css) {
  if (!sheets.has(css)) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    sheets.set(css, sheet);
  }
  return sheets.get(css);
}
