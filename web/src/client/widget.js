// <rid-protect server="…" [manifest="…/manifest.json"] [for="input-id"] [eps="8"] [backend="auto"] [format="png|jpeg|webp"]>
// Without `manifest`, the server's first model (/v1/models) is used.
// Protects the photos chosen in a file input of the host page (the one named by `for`, else the
// first file input of the surrounding form), puts the protected copies in that input, so the
// host form uploads them, and fires `rid-protected` (detail: { blob, name, backend, format }) per photo.
// What the host's form gets (web/README.md says why): a file its input accepts, named as the person
// chose it with the extension of what it now holds (me.jpg -> me.png): `format`, else the first of
// png, jpeg, webp that the input's `accept` allows.

import { stemOf } from '../shared/formats.js';
import { OUTPUT_FORMATS, createProtector, listModels } from './protector.js';

/** The format a file input takes: the first of ours that its accept list allows (png if none does). */
export function formatFor(input) {
  const accept = (input?.accept ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
  if (!accept.length) return 'png';
  const takes = ([format, spec]) => accept.some((t) => t === spec.media_type || t === 'image/*' || t === `.${spec.extension}`
    || (format === 'jpeg' && (t === '.jpeg' || t === 'image/jpg')));
  return Object.entries(OUTPUT_FORMATS).find(takes)?.[0] ?? 'png';
}

/** The name the host's form gets: the person's own file name, with the extension of its new content. */
function hostName(name, format) {
  return `${stemOf(name)}.${OUTPUT_FORMATS[format].extension}`;
}
import { sheetOf } from './sheets.js';

const STYLE = `:host{display:inline-block;font:14px system-ui,sans-serif;color:inherit}
.status{padding:.25em 0}.error{color:#b00020}`;

class RidProtect extends HTMLElement {
  #protector = null;
  #status;
  #busy = false;

  connectedCallback() {
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [sheetOf(STYLE)];
    root.innerHTML = `<div class="status" role="status" aria-live="polite">RID: ready to protect photos</div>`;
    this.#status = root.querySelector('.status');
    this.input()?.addEventListener('change', (event) => this.#onChange(event));
  }

  /** The file input this widget serves. */
  input() {
    const id = this.getAttribute('for');
    if (id) return document.getElementById(id);
    return (this.closest('form') ?? this.parentElement)?.querySelector('input[type=file]');
  }

  async #ready() {
    this.#protector ??= this.#start();
    return this.#protector;
  }

  async #start() {
    const server = this.getAttribute('server');
    const manifestUrl = this.getAttribute('manifest') ?? (await listModels(server ?? location.origin))[0]?.manifest_url;
    return createProtector({
      manifestUrl,
      serverUrl: this.getAttribute('server'),
      backend: this.getAttribute('backend') ?? 'auto',
      onProgress: (p) => this.#say(p.stage === 'download' ? `RID: loading the protection model ${Math.round((100 * p.modelLoaded) / (p.modelTotal || 1))} %` : `RID: protecting ${p.name} ${Math.round(100 * p.fraction)} %`),
    });
  }

  #say(text, error = false) {
    this.#status.textContent = text;
    this.#status.classList.toggle('error', error);
  }

  async #onChange(event) {
    const input = event.target;
    if (this.#busy || !input.files?.length || input.dataset.ridProtected === 'yes') return;
    this.#busy = true;
    const files = [...input.files];
    const protectedFiles = [];
    try {
      const protector = await this.#ready();
      const eps = this.hasAttribute('eps') ? Number(this.getAttribute('eps')) : undefined;
      const format = this.getAttribute('format') ?? formatFor(input);
      for (const file of files) {
        try {
          const result = await protector.protect(file, { eps, format });
          const name = hostName(file.name, format);
          protectedFiles.push(new File([result.blob], name, { type: result.blob.type }));
          this.dispatchEvent(new CustomEvent('rid-protected', { bubbles: true, composed: true,
            detail: { blob: result.blob, name, backend: result.backend, format } }));
        } catch (err) {
          this.#say(`RID: ${file.name}: ${err.message}`, true);
          this.dispatchEvent(new CustomEvent('rid-error', { bubbles: true, composed: true, detail: { name: file.name, code: err.code, message: err.message } }));
        }
      }
      const transfer = new DataTransfer();
      protectedFiles.forEach((f) => transfer.items.add(f));
      input.dataset.ridProtected = 'yes'; // our own change below is not a new choice
      input.files = transfer.files;
      if (protectedFiles.length) this.#say(`RID: ${protectedFiles.length} of ${files.length} photo(s) protected (${protector.backend})`, protectedFiles.length < files.length);
    } catch (err) {
      this.#protector = null; // the next choice of photos tries again
      this.#say(`RID: cannot start: ${err.message}`, true);
    } finally {
      delete input.dataset.ridProtected;
      this.#busy = false;
    }
  }
}

if (!customElements.get('rid-protect')) customElements.define('rid-protect', RidProtect);
