// <rid-compare>: the original and the protected photo, one over the other, with a slider
// (before on the left, after on the right), a 100 % view (at screen size a change of a few
// levels cannot show), and an "amplified change" view (protected - original, scaled so that eps
// fills the range, on mid grey).

import { sheetOf } from './sheets.js';

const STYLE = `:host{display:block;position:relative;max-width:100%}
.view{display:inline-block;vertical-align:top;max-width:100%;overflow:hidden}
.view.actual{display:block;overflow:auto;max-height:75vh;outline:1px solid #ccc}
.split{position:absolute;top:0;bottom:0;width:0;border-left:2px solid #fff;box-shadow:0 0 0 1px rgba(0,0,0,.5);pointer-events:none}
.stage{position:relative;display:inline-block;max-width:100%;line-height:0}
.actual .stage{max-width:none}
canvas{max-width:100%;height:auto}.actual canvas{max-width:none}.top{position:absolute;left:0;top:0}
.tag{position:sticky;top:0;z-index:1;display:flex;justify-content:space-between;pointer-events:none;line-height:1.4}
.tag span{background:rgba(0,0,0,.65);color:#fff;padding:.1em .5em;font-size:.9em}
label{display:block;margin:.3em 0}.hint{margin:.2em 0;font-size:.9em;color:#444}`;

export class RidCompare extends HTMLElement {
  #before;
  #after;
  #amp;
  #slider;
  #mode;
  #view;
  #tags;
  #hint;
  #split;

  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [sheetOf(STYLE)];
    root.innerHTML = `
      <div class="view">
        <div class="tag"><span class="left">Before</span><span class="right">After (protected)</span></div>
        <div class="stage"><canvas class="before"></canvas><canvas class="top after"></canvas><canvas class="top amp" hidden></canvas><div class="split"></div></div>
      </div>
      <label>Before ◀ <input class="slider" type="range" min="0" max="100" value="50" aria-label="Where the split between before and after lies"> ▶ After</label>
      <label><input class="zoom" type="checkbox"> Actual size (100 %)</label>
      <label><input class="mode" type="checkbox"> Show the change, amplified</label>
      <p class="hint" hidden></p>`;
    [this.#before, this.#after, this.#amp] = ['.before', '.after', '.amp'].map((s) => root.querySelector(s));
    this.#slider = root.querySelector('.slider');
    this.#mode = root.querySelector('.mode');
    this.#view = root.querySelector('.view');
    this.#tags = root.querySelector('.tag');
    this.#hint = root.querySelector('.hint');
    this.#split = root.querySelector('.split');
    this.#slider.addEventListener('input', () => this.#clip());
    this.#mode.addEventListener('change', () => this.#showMode());
    root.querySelector('.zoom').addEventListener('change', (e) => this.#view.classList.toggle('actual', e.target.checked));
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
    this.#hint.textContent = `The amplified view shows only the change, made about ${Math.round(gain)} times stronger so that you `
      + 'can see where it is: mid grey is no change. The photo itself changes far less than this.';
    this.#clip();
    this.#showMode();
  }

  #showMode() {
    const on = this.#mode.checked;
    this.#amp.hidden = !on;
    this.#hint.hidden = !on;
    this.#tags.querySelector('.right').textContent = on ? 'The change, amplified' : 'After (protected)';
    this.#tags.querySelector('.left').hidden = on;
    this.#split.hidden = on;
  }

  #clip() {
    this.#after.style.clipPath = `inset(0 0 0 ${this.#slider.value}%)`;
    this.#split.style.left = `${this.#slider.value}%`;
  }
}

if (!customElements.get('rid-compare')) customElements.define('rid-compare', RidCompare);
