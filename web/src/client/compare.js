// <rid-compare>: the original and the protected photo, one over the other, with a slider, and an
// "amplified perturbation" view (|protected - original| scaled so that eps fills the range).

import { sheetOf } from './sheets.js';

const STYLE = `:host{display:block;position:relative;max-width:100%}
.stage{position:relative;display:inline-block;max-width:100%;line-height:0}
canvas{max-width:100%;height:auto}.top{position:absolute;left:0;top:0}
label{display:block;margin:.3em 0}`;

export class RidCompare extends HTMLElement {
  #before;
  #after;
  #amp;
  #slider;
  #mode;

  connectedCallback() {
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [sheetOf(STYLE)];
    root.innerHTML = `
      <div class="stage"><canvas class="before"></canvas><canvas class="top after"></canvas><canvas class="top amp" hidden></canvas></div>
      <label>Before / after <input class="slider" type="range" min="0" max="100" value="50" aria-label="Before and after split"></label>
      <label><input class="mode" type="checkbox"> Show the change, amplified</label>`;
    [this.#before, this.#after, this.#amp] = ['.before', '.after', '.amp'].map((s) => root.querySelector(s));
    this.#slider = root.querySelector('.slider');
    this.#mode = root.querySelector('.mode');
    this.#slider.addEventListener('input', () => this.#clip());
    this.#mode.addEventListener('change', () => (this.#amp.hidden = !this.#mode.checked));
  }

  /** Show a pair of Blobs; eps in 8-bit levels sets the amplification. */
  async show(original, protectedBlob, eps) {
    const [a, b] = await Promise.all([createImageBitmap(original, { imageOrientation: 'from-image' }), createImageBitmap(protectedBlob)]);
    const draw = (canvas, bitmap) => {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(bitmap, 0, 0);
      return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    };
    const pa = draw(this.#before, a), pb = draw(this.#after, b);
    this.#amp.width = b.width;
    this.#amp.height = b.height;
    const diff = new ImageData(b.width, b.height);
    const gain = 127 / Math.max(1, eps);
    for (let i = 0; i < diff.data.length; i += 4) {
      for (let c = 0; c < 3; c++) diff.data[i + c] = 128 + (pb.data[i + c] - pa.data[i + c]) * gain;
      diff.data[i + 3] = 255;
    }
    this.#amp.getContext('2d').putImageData(diff, 0, 0);
    this.#clip();
  }

  #clip() {
    this.#after.style.clipPath = `inset(0 0 0 ${this.#slider.value}%)`;
  }
}

if (!customElements.get('rid-compare')) customElements.define('rid-compare', RidCompare);
