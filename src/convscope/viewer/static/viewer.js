/*
 * convscope interactive similarity overlays: the browser side (payload format version 1).
 *
 * Fong, Mordvintsev, Vedaldi, Olah, "Interactive Similarity Overlays", VISxAI 2021; Fong, DPhil
 * thesis, ch. 6. Pointing at location (i, j) of an image shows, over every location (u, v) of
 * every image, the cosine similarity s = u_ij . v_uv / ((|u_ij| + eps)(|v_uv| + eps)).
 *
 * The payload ships each activation vector already divided by (|u| + eps) (float16), so one
 * dot product per location is the paper's eps-cosine exactly: a hover costs O(N.H.W.D)
 * multiply-adds in the browser instead of the original's O(N^2 H^2 W^2) precomputed sprites.
 * Maps are coloured through 256-entry lookup tables and drawn as an h x w bitmap scaled to the
 * tile (nearest neighbour as in the original, or bilinear), under a CSS opacity (0.7 default).
 *
 * Vanilla ES2017, no dependencies, no network access except fetching the manifest and its
 * arrays when the viewer is served. Labels only ever reach the page through textContent,
 * attributes set with setAttribute, new Option(), or canvas fillText: never as HTML.
 */
(function () {
  "use strict";

  const FORMAT = "convscope-similarity-overlay";
  const QUERY_COLOUR = "#ffff00"; // the original's yellow query cell
  const CHART_LINE = "#1f77b4";
  const CHART_POINT = "#d62728";
  const BYTES = { float16: 2, int16: 2, uint8: 1 };

  // float16 -> float32 for all 65536 bit patterns, built once (no Float16Array needed).
  let HALF = null;
  function halfTable() {
    if (HALF) return HALF;
    HALF = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const mantissa = h & 0x3ff;
      let value;
      if (exponent === 0) value = mantissa * Math.pow(2, -24);
      else if (exponent === 31) value = mantissa ? NaN : Infinity;
      else value = (1 + mantissa / 1024) * Math.pow(2, exponent - 15);
      HALF[h] = sign * value;
    }
    return HALF;
  }

  function product(shape) {
    return shape.reduce((a, b) => a * b, 1);
  }

  function decodeBase64(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }

  function typedFromBytes(bytes, spec) {
    const n = product(spec.shape);
    const size = BYTES[spec.dtype];
    if (size === undefined) throw new Error("unsupported array dtype " + String(spec.dtype));
    if (bytes.byteLength !== n * size) {
      throw new Error(
        "array of shape [" + spec.shape.join(", ") + "] needs " + n * size + " bytes, got " +
          bytes.byteLength
      );
    }
    // DataView reads little-endian explicitly, whatever the platform's byte order.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (spec.dtype === "uint8") return bytes.slice();
    if (spec.dtype === "int16") {
      const out = new Int16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
      return out;
    }
    const table = halfTable();
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = table[view.getUint16(2 * i, true)];
    return out;
  }

  async function loadArray(spec, base) {
    if (spec === null || typeof spec !== "object") throw new Error("missing array");
    if (typeof spec.data === "string") return typedFromBytes(decodeBase64(spec.data), spec);
    const response = await fetch(new URL(spec.url, base).href);
    if (!response.ok) throw new Error("could not load " + spec.url + " (" + response.status + ")");
    return typedFromBytes(new Uint8Array(await response.arrayBuffer()), spec);
  }

  function checkShape(spec, expected, what) {
    const shape = spec.shape;
    const ok = shape.length === expected.length && expected.every((v, i) => v < 0 || v === shape[i]);
    if (!ok) throw new Error(what + " has shape [" + shape.join(", ") + "], expected [" +
      expected.map((v) => (v < 0 ? "*" : v)).join(", ") + "]");
  }

  async function readPayload(root) {
    const manifest = root.getAttribute("data-manifest");
    if (manifest) {
      const url = new URL(manifest, document.baseURI).href;
      const response = await fetch(url);
      if (!response.ok) throw new Error("could not load " + manifest + " (" + response.status + ")");
      return { payload: await response.json(), base: url };
    }
    const script = root.querySelector("script.convscope-data");
    if (!script) throw new Error("no embedded data (script.convscope-data) and no data-manifest");
    return { payload: JSON.parse(script.textContent), base: document.baseURI };
  }

  // Inside a srcdoc frame the base is about:srcdoc, against which a relative URL cannot resolve.
  function resolveUrl(url, base) {
    try {
      return new URL(url, base).href;
    } catch (err) {
      return url;
    }
  }

  function parseColour(text) {
    const m = /^#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})$/.exec(String(text));
    return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : [128, 128, 128];
  }

  function clip(v, lo, hi) {
    return v < lo ? lo : v > hi ? hi : v;
  }

  // The original's synchronised cursor: round(N_target / N_source * x), clipped to the grid.
  function rescale(index, from, to) {
    return clip(Math.round((index * to) / from), 0, to - 1);
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // Timing samples for tests and benchmarks, bounded so a long session cannot grow them forever.
  function record(list, value) {
    if (list.length >= 10000) list.shift();
    list.push(value);
  }

  function nextFrame() {
    return new Promise((resolve) => requestAnimationFrame(() => resolve()));
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
      ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return ticks;
  }

  function formatTick(v) {
    return String(Math.round(v * 1000) / 1000);
  }

  class Viewer {
    constructor(root) {
      this.root = root;
      this.stats = { renders: 0, latencies: [], compute: [], render: [], dispatch: [] };
      this.lastMaps = {};
      this.state = { query: null, hover: null, pinned: null, options: {} };
      this._scratch = {};
      this._frame = 0;
      this._pendingEvent = null;
      this._mouseInside = false;
      this._mouseOver = false;
      this.ready = this._start();
    }

    async _start() {
      try {
        const loaded = await readPayload(this.root);
        await this._decode(loaded.payload, loaded.base);
        this._build();
        this.render();
        await Promise.all(this._images.map((img) => img.decode().catch(() => undefined)));
        await nextFrame();
        return this;
      } catch (err) {
        const box = element("p", "cs-error", "convscope viewer: " + (err && err.message ? err.message : String(err)));
        this.root.appendChild(box);
        throw err;
      }
    }

    async _decode(payload, base) {
      if (!payload || payload.format !== FORMAT) throw new Error("not a " + FORMAT + " payload");
      if (payload.version !== 1) throw new Error("unsupported payload version " + payload.version);
      this.payload = payload;
      this.base = base;
      this.images = payload.images;
      const n = payload.images.length;
      this.signed = Boolean(payload.signed);
      this.luts = {};
      for (const name of Object.keys(payload.colormaps)) {
        checkShape(payload.colormaps[name], [256, 3], "colour map " + name);
        this.luts[name] = await loadArray(payload.colormaps[name], base);
      }
      if (!Object.keys(this.luts).length) throw new Error("the payload has no colour maps");
      this.layers = [];
      for (const layer of payload.layers) {
        checkShape(layer.features, [n, layer.height, layer.width, layer.channels], "layer " + layer.name);
        this.layers.push({
          name: String(layer.name), h: layer.height, w: layer.width, d: layer.channels,
          feats: await loadArray(layer.features, base),
        });
      }
      if (!this.layers.length) throw new Error("the payload has no layers");
      this.nmf = null;
      if (payload.nmf) {
        const spec = payload.nmf;
        const layer = this._layer(spec.layer);
        checkShape(spec.weights, [n, layer.h, layer.w, spec.k], "NMF weights");
        this.nmf = {
          layer: layer.name, k: spec.k, colours: spec.colors.map(parseColour),
          colourText: spec.colors.map((c) => "rgb(" + parseColour(c).join(",") + ")"),
          labels: spec.labels.map(String), weights: await loadArray(spec.weights, base),
        };
      }
      this.sweeps = [];
      for (const sweep of payload.sweeps || []) {
        const layer = this._layer(sweep.layer);
        const T = sweep.values.length;
        checkShape(sweep.features, [T, -1, -1, layer.d], "sweep features");
        checkShape(sweep.correspondence, [T, layer.h, layer.w, 2], "sweep correspondence");
        this.sweeps.push({
          kind: sweep.kind, label: String(sweep.label), layer: layer.name, source: sweep.source,
          values: sweep.values.slice(), images: sweep.images, h: sweep.features.shape[1],
          w: sweep.features.shape[2], feats: await loadArray(sweep.features, base),
          corr: await loadArray(sweep.correspondence, base), curve: null, points: null,
        });
      }
      const display = payload.display || {};
      const maps = Object.keys(this.luts);
      this.state.options = {
        opacity: typeof display.opacity === "number" ? display.opacity : 0.7,
        colormap: maps.indexOf(display.colormap) >= 0 ? display.colormap : maps[0],
        normalization: display.normalization === "query" ? "query" : "fixed",
        upscale: display.upscale === "bilinear" ? "bilinear" : "nearest",
        view: display.view === "nmf" && this.nmf ? "nmf" : "similarity",
        multiLayer: Boolean(display.multi_layer),
        layer: this.layers[0].name,
        nmfMode: "mix",
      };
      this.size = typeof display.size === "number" ? display.size : 224;
    }

    _layer(name) {
      const layer = this.layers.find((l) => l.name === String(name));
      if (!layer) throw new Error("unknown layer " + String(name));
      return layer;
    }

    _tileSize(image) {
      const scale = this.size / Math.max(image.height, image.width);
      return [Math.max(1, Math.round(image.width * scale)), Math.max(1, Math.round(image.height * scale))];
    }

    _makeTile(image, onFrame) {
      const [tw, th] = this._tileSize(image);
      const figure = element("figure", "cs-tile");
      const frame = element("div", "cs-frame");
      frame.style.width = tw + "px";
      frame.style.height = th + "px";
      const img = document.createElement("img");
      img.width = tw;
      img.height = th;
      img.draggable = false;
      img.setAttribute("alt", String(image.name));
      img.src = resolveUrl(String(image.src), this.base);
      this._images.push(img);
      const canvas = document.createElement("canvas");
      canvas.className = "cs-overlay";
      canvas.width = tw;
      canvas.height = th;
      frame.appendChild(img);
      frame.appendChild(canvas);
      figure.appendChild(frame);
      const caption = element("figcaption", "cs-caption");
      caption.style.maxWidth = tw + "px";
      caption.appendChild(element("span", "cs-name", String(image.name)));
      if (image.label !== null && image.label !== undefined) {
        caption.appendChild(element("span", "cs-label", String(image.label)));
      }
      figure.appendChild(caption);
      if (onFrame) onFrame(frame);
      return { figure, frame, canvas, ctx: canvas.getContext("2d"), img, tw, th };
    }

    _build() {
      const root = this.root;
      this._images = [];
      const app = element("div", "cs-app");
      if (this.payload.title) app.appendChild(element("div", "cs-title", String(this.payload.title)));
      const notes = element("div", "cs-notes");
      for (const note of this.payload.notes || []) notes.appendChild(element("p", null, String(note)));
      app.appendChild(notes);
      app.appendChild(this._buildControls());
      app.appendChild(element("p", "cs-help",
        "Hover a tile to query a location; click pins it. Keys: arrows move the query cell, " +
        "n / p next / previous image, l next layer, m similarity / NMF view, Escape unpins."));
      this.statusEl = element("div", "cs-status");
      this.statusEl.setAttribute("aria-live", "polite");
      app.appendChild(this.statusEl);

      this.rows = [];
      const rowsEl = element("div", "cs-layers");
      for (const layer of this.layers) {
        const rowEl = element("section", "cs-row");
        rowEl.appendChild(element("div", "cs-row-title", layer.name + "  (" + layer.h + "\u00d7" + layer.w + "\u00d7" + layer.d + ")"));
        const tilesEl = element("div", "cs-tiles");
        const tiles = this.images.map((image, index) =>
          this._makeTile(image, (frame) => this._listen(frame, layer, index)));
        for (const tile of tiles) tilesEl.appendChild(tile.figure);
        rowEl.appendChild(tilesEl);
        rowsEl.appendChild(rowEl);
        this.rows.push({ layer, el: rowEl, tiles });
      }
      app.appendChild(rowsEl);

      this.legendEl = element("div", "cs-legend");
      if (this.nmf) {
        this.nmf.labels.forEach((label, k) => {
          const item = element("span", "cs-legend-item");
          const swatch = element("span", "cs-swatch");
          swatch.style.background = this.nmf.colourText[k];
          item.appendChild(swatch);
          item.appendChild(element("span", null, label));
          this.legendEl.appendChild(item);
        });
      }
      app.appendChild(this.legendEl);

      for (const sweep of this.sweeps) {
        const block = element("section", "cs-sweep");
        const source = this.images[sweep.source];
        block.appendChild(element("div", "cs-row-title",
          sweep.kind + " sweep of " + String(source ? source.name : sweep.source) + " at " + sweep.layer));
        const tilesEl = element("div", "cs-tiles");
        sweep.tiles = sweep.images.map((image) => this._makeTile(image, null));
        for (const tile of sweep.tiles) tilesEl.appendChild(tile.figure);
        block.appendChild(tilesEl);
        sweep.chart = document.createElement("canvas");
        sweep.chart.className = "cs-chart";
        sweep.chart.width = 480;
        sweep.chart.height = 240;
        block.appendChild(sweep.chart);
        app.appendChild(block);
      }

      root.appendChild(app);
      if (!root.hasAttribute("tabindex")) root.setAttribute("tabindex", "0");
      // Keys reach the viewer when it has the focus, and also while the mouse is over it (so
      // hovering and pressing a key works without clicking first); never twice.
      document.addEventListener("keydown", (ev) => {
        const focused = root.contains(document.activeElement);
        const idle = !document.activeElement || document.activeElement === document.body;
        if (focused || (idle && this._mouseOver)) this._onKey(ev);
      });
      root.addEventListener("mouseenter", () => { this._mouseOver = true; });
      root.addEventListener("mouseleave", () => { this._mouseOver = false; });
      this._applyOpacity();
    }

    _buildControls() {
      const o = this.state.options;
      const bar = element("div", "cs-controls");
      const add = (text, control) => {
        const label = element("label", null);
        label.appendChild(element("span", null, text));
        label.appendChild(control);
        bar.appendChild(label);
        return control;
      };
      const select = (pairs, value, onChange) => {
        const s = document.createElement("select");
        for (const [v, t] of pairs) s.add(new Option(t, v));
        s.value = value;
        s.addEventListener("change", () => onChange(s.value));
        return s;
      };
      const slider = document.createElement("input");
      slider.type = "range";
      slider.min = "0";
      slider.max = "1";
      slider.step = "0.05";
      slider.value = String(o.opacity);
      slider.addEventListener("input", () => {
        o.opacity = Number(slider.value);
        this._applyOpacity();
      });
      this.controls = {};
      this.controls.opacity = add("opacity", slider);
      this.controls.colormap = add("colour map", select(Object.keys(this.luts).map((k) => [k, k]),
        o.colormap, (v) => { o.colormap = v; this.schedule(); }));
      this.controls.normalization = add("normalisation", select(
        [["fixed", this.signed ? "fixed [-1, 1]" : "fixed [0, 1]"], ["query", "per query (min\u2013max)"]],
        o.normalization, (v) => { o.normalization = v; this.schedule(); }));
      this.controls.upscale = add("upscaling", select([["nearest", "nearest"], ["bilinear", "bilinear"]],
        o.upscale, (v) => { o.upscale = v; this.schedule(); }));
      this.controls.layer = add("layer", select(this.layers.map((l) => [l.name, l.name]), o.layer,
        (v) => { o.layer = v; this.schedule(); }));
      const multi = document.createElement("input");
      multi.type = "checkbox";
      multi.checked = o.multiLayer;
      multi.addEventListener("change", () => { o.multiLayer = multi.checked; this.schedule(); });
      this.controls.multiLayer = add("all layers", multi);
      if (this.nmf) {
        this.controls.view = add("view", select([["similarity", "similarity"], ["nmf", "NMF components"]],
          o.view, (v) => { o.view = v; this.schedule(); }));
        this.controls.nmfMode = add("NMF colours", select([["mix", "weighted mix"], ["argmax", "argmax"]],
          o.nmfMode, (v) => { o.nmfMode = v; this.schedule(); }));
      }
      return bar;
    }

    _syncControls() {
      const o = this.state.options;
      this.controls.layer.value = o.layer;
      this.controls.multiLayer.checked = o.multiLayer;
      if (this.controls.view) this.controls.view.value = o.view;
    }

    _applyOpacity() {
      this.root.style.setProperty("--cs-opacity", String(this.state.options.opacity));
    }

    _cellAt(frame, layer, ev) {
      const rect = frame.getBoundingClientRect();
      const x = ev.clientX - rect.left;
      const y = ev.clientY - rect.top;
      return {
        row: clip(Math.floor((layer.h * y) / rect.height), 0, layer.h - 1),
        col: clip(Math.floor((layer.w * x) / rect.width), 0, layer.w - 1),
      };
    }

    _listen(frame, layer, image) {
      frame.addEventListener("mousemove", (ev) => {
        const cell = this._cellAt(frame, layer, ev);
        this._mouseInside = true;
        this.state.hover = { layer: layer.name, image, row: cell.row, col: cell.col };
        if (this._pendingEvent === null) this._pendingEvent = ev.timeStamp;
        record(this.stats.dispatch, performance.now() - ev.timeStamp);
        this.schedule();
      });
      frame.addEventListener("mouseleave", () => {
        this._mouseInside = false;
        this.state.hover = null;
        this.schedule();
      });
      frame.addEventListener("click", (ev) => {
        const cell = this._cellAt(frame, layer, ev);
        const q = { layer: layer.name, image, row: cell.row, col: cell.col };
        const p = this.state.pinned;
        const same = p && p.layer === q.layer && p.image === q.image && p.row === q.row && p.col === q.col;
        this.state.pinned = same ? null : q;
        this.root.focus({ preventScroll: true });
        this.schedule();
      });
    }

    _onKey(ev) {
      const tag = ev.target && ev.target.tagName;
      if (tag === "SELECT" || tag === "INPUT") return;
      const o = this.state.options;
      const slot = this.state.hover ? "hover" : this.state.pinned ? "pinned" : "hover";
      const current = this._query();
      const start = current || { layer: this._shownLayers()[0].name, image: 0, row: 0, col: 0 };
      let q = Object.assign({}, start);
      const layer = this._layer(q.layer);
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (moves[ev.key]) {
        if (current) {
          q.row = clip(q.row + moves[ev.key][0], 0, layer.h - 1);
          q.col = clip(q.col + moves[ev.key][1], 0, layer.w - 1);
        }
      } else if (ev.key === "n" || ev.key === "p") {
        if (current) q.image = (q.image + (ev.key === "n" ? 1 : this.images.length - 1)) % this.images.length;
      } else if (ev.key === "l") {
        const i = this.layers.findIndex((l) => l.name === o.layer);
        const next = this.layers[(i + 1) % this.layers.length];
        o.layer = next.name;
        if (current) q = { layer: next.name, image: q.image, row: rescale(q.row, layer.h, next.h), col: rescale(q.col, layer.w, next.w) };
        else q = null;
      } else if (ev.key === "m") {
        if (this.nmf) o.view = o.view === "nmf" ? "similarity" : "nmf";
        q = current;
      } else if (ev.key === "Escape") {
        this.state.pinned = null;
        if (!this._mouseInside) this.state.hover = null;
        q = undefined;
      } else {
        return;
      }
      ev.preventDefault();
      if (q !== undefined && (q !== current || slot === "pinned")) this.state[slot] = q;
      this._syncControls();
      this.schedule();
    }

    _query() {
      return this.state.hover || this.state.pinned;
    }

    _shownLayers() {
      const o = this.state.options;
      if (o.view === "nmf" && this.nmf) return [this._layer(this.nmf.layer)];
      return o.multiLayer ? this.layers.slice() : [this._layer(o.layer)];
    }

    // The query's cell carried to another layer with the original's rounding rule.
    mapCell(q, layer) {
      const from = this._layer(q.layer);
      if (from === layer) return { row: q.row, col: q.col };
      return { row: rescale(q.row, from.h, layer.h), col: rescale(q.col, from.w, layer.w) };
    }

    schedule() {
      if (this._frame) return;
      this._frame = requestAnimationFrame(() => {
        this._frame = 0;
        const started = this._pendingEvent;
        this._pendingEvent = null;
        this.render();
        if (started !== null) record(this.stats.latencies, performance.now() - started);
      });
    }

    _scratchCanvas(h, w) {
      const key = h + "x" + w;
      if (!this._scratch[key]) {
        const canvas = document.createElement("canvas");
        canvas.width = w;
        canvas.height = h;
        const ctx = canvas.getContext("2d");
        this._scratch[key] = { canvas, ctx, image: ctx.createImageData(w, h) };
      }
      return this._scratch[key];
    }

    // s[u, v] = q . f[u, v]: the eps-cosine, since the shipped vectors are pre-normalised.
    // The query is copied to a Float64Array and summed with two accumulators: about twice as
    // fast in V8 as the plain loop (the hot loop of every hover), and summed in double precision.
    _similarity(query, qOffset, feats, base, cells, d) {
      const q = new Float64Array(d);
      for (let k = 0; k < d; k++) q[k] = query[qOffset + k];
      const out = new Float32Array(cells);
      const even = d - (d % 2);
      for (let c = 0, o = base; c < cells; c++, o += d) {
        let s0 = 0;
        let s1 = 0;
        for (let k = 0; k < even; k += 2) {
          s0 += q[k] * feats[o + k];
          s1 += q[k + 1] * feats[o + k + 1];
        }
        if (even < d) s0 += q[even] * feats[o + even];
        out[c] = s0 + s1;
      }
      return out;
    }

    _range(maps) {
      if (this.state.options.normalization === "query") {
        let lo = Infinity;
        let hi = -Infinity;
        for (const m of maps) for (let i = 0; i < m.length; i++) {
          if (m[i] < lo) lo = m[i];
          if (m[i] > hi) hi = m[i];
        }
        return [lo, hi];
      }
      return this.signed ? [-1, 1] : [0, 1];
    }

    _colourIndex(s, lo, hi) {
      // A constant per-query map has no contrast to stretch: show it as maximally similar.
      const t = hi > lo ? (s - lo) / (hi - lo) : 1;
      return clip(Math.round(t * 255), 0, 255);
    }

    _paint(tile, h, w, fill, mark) {
      const scratch = this._scratchCanvas(h, w);
      const data = scratch.image.data;
      fill(data);
      scratch.ctx.putImageData(scratch.image, 0, 0);
      const ctx = tile.ctx;
      ctx.clearRect(0, 0, tile.tw, tile.th);
      ctx.imageSmoothingEnabled = this.state.options.upscale === "bilinear";
      ctx.drawImage(scratch.canvas, 0, 0, tile.tw, tile.th);
      if (mark) {
        const x0 = (mark.col * tile.tw) / w;
        const y0 = (mark.row * tile.th) / h;
        ctx.strokeStyle = QUERY_COLOUR;
        ctx.lineWidth = 2;
        ctx.strokeRect(x0 + 1, y0 + 1, tile.tw / w - 2, tile.th / h - 2);
      }
    }

    _paintMap(tile, map, h, w, range, mark) {
      const lut = this.luts[this.state.options.colormap];
      this._paint(tile, h, w, (data) => {
        for (let c = 0; c < h * w; c++) {
          const idx = 3 * this._colourIndex(map[c], range[0], range[1]);
          data[4 * c] = lut[idx];
          data[4 * c + 1] = lut[idx + 1];
          data[4 * c + 2] = lut[idx + 2];
          data[4 * c + 3] = 255;
        }
      }, mark);
    }

    _paintNmf(tile, image, mark) {
      const nmf = this.nmf;
      const layer = this._layer(nmf.layer);
      const k = nmf.k;
      const argmax = this.state.options.nmfMode === "argmax";
      const base = image * layer.h * layer.w * k;
      this._paint(tile, layer.h, layer.w, (data) => {
        for (let c = 0; c < layer.h * layer.w; c++) {
          const o = base + c * k;
          let r = 0;
          let g = 0;
          let b = 0;
          if (argmax) {
            let best = -1;
            let bestW = 0;
            for (let j = 0; j < k; j++) if (nmf.weights[o + j] > bestW) { bestW = nmf.weights[o + j]; best = j; }
            if (best >= 0) [r, g, b] = nmf.colours[best];
          } else {
            for (let j = 0; j < k; j++) {
              const wk = nmf.weights[o + j];
              r += wk * nmf.colours[j][0];
              g += wk * nmf.colours[j][1];
              b += wk * nmf.colours[j][2];
            }
          }
          data[4 * c] = clip(Math.round(r), 0, 255);
          data[4 * c + 1] = clip(Math.round(g), 0, 255);
          data[4 * c + 2] = clip(Math.round(b), 0, 255);
          data[4 * c + 3] = 255;
        }
      }, mark);
    }

    _clear(tile) {
      tile.ctx.clearRect(0, 0, tile.tw, tile.th);
    }

    render() {
      const t0 = performance.now();
      const o = this.state.options;
      const q = this._query();
      this.state.query = q ? Object.assign({}, q) : null;
      const shown = this._shownLayers();
      const maps = {};
      let computeMs = 0;
      for (const row of this.rows) {
        const visible = shown.indexOf(row.layer) >= 0;
        row.el.hidden = !visible;
        if (!visible) continue;
        const layer = row.layer;
        const cell = q ? this.mapCell(q, layer) : null;
        if (o.view === "nmf" && this.nmf) {
          row.tiles.forEach((tile, i) => this._paintNmf(tile, i, cell && i === q.image ? cell : null));
          continue;
        }
        if (!cell) {
          row.tiles.forEach((tile) => this._clear(tile));
          continue;
        }
        const c0 = performance.now();
        const cells = layer.h * layer.w;
        const qOffset = ((q.image * layer.h + cell.row) * layer.w + cell.col) * layer.d;
        const layerMaps = this.images.map((_, i) =>
          this._similarity(layer.feats, qOffset, layer.feats, i * cells * layer.d, cells, layer.d));
        computeMs += performance.now() - c0;
        const range = this._range(layerMaps);
        row.tiles.forEach((tile, i) =>
          this._paintMap(tile, layerMaps[i], layer.h, layer.w, range, i === q.image ? cell : null));
        maps[layer.name] = layerMaps;
      }
      this.legendEl.hidden = !(o.view === "nmf" && this.nmf);
      if (this.controls.nmfMode) this.controls.nmfMode.parentElement.hidden = o.view !== "nmf";
      this.sweeps.forEach((sweep) => this._renderSweep(sweep, q));
      this.lastMaps = maps;
      this._status(q);
      this.stats.renders += 1;
      record(this.stats.compute, computeMs);
      record(this.stats.render, performance.now() - t0);
    }

    _renderSweep(sweep, q) {
      sweep.curve = null;
      sweep.points = null;
      if (!q || q.image !== sweep.source) {
        sweep.tiles.forEach((tile) => this._clear(tile));
        this._drawChart(sweep, "hover " + String(this.images[sweep.source] ? this.images[sweep.source].name : "") +
          " to see the similarity of a location across the " + sweep.kind + " sweep");
        return;
      }
      const layer = this._layer(sweep.layer);
      const cell = this.mapCell(q, layer);
      const qOffset = ((sweep.source * layer.h + cell.row) * layer.w + cell.col) * layer.d;
      const cells = sweep.h * sweep.w;
      const maps = sweep.values.map((_, t) =>
        this._similarity(layer.feats, qOffset, sweep.feats, t * cells * layer.d, cells, layer.d));
      const range = this._range(maps);
      const curve = [];
      maps.forEach((map, t) => {
        const at = ((t * layer.h + cell.row) * layer.w + cell.col) * 2;
        const r = sweep.corr[at];
        const c = sweep.corr[at + 1];
        const inside = r >= 0 && c >= 0 && r < sweep.h && c < sweep.w;
        curve.push(inside ? map[r * sweep.w + c] : null);
        this._paintMap(sweep.tiles[t], map, sweep.h, sweep.w, range, inside ? { row: r, col: c } : null);
      });
      sweep.curve = curve;
      this._drawChart(sweep, null);
    }

    _drawChart(sweep, message) {
      const canvas = sweep.chart;
      const ctx = canvas.getContext("2d");
      const W = canvas.width;
      const H = canvas.height;
      const m = { left: 52, right: 16, top: 14, bottom: 42 };
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, W, H);
      const values = sweep.values;
      let xlo = Math.min.apply(null, values);
      let xhi = Math.max.apply(null, values);
      if (!(xhi > xlo)) { xlo -= 1; xhi += 1; }
      const [ylo, yhi] = this.signed ? [-1, 1] : [0, 1];
      const px = (x) => m.left + ((x - xlo) / (xhi - xlo)) * (W - m.left - m.right);
      const py = (y) => H - m.bottom - ((y - ylo) / (yhi - ylo)) * (H - m.top - m.bottom);
      ctx.strokeStyle = "#333333";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(m.left, m.top);
      ctx.lineTo(m.left, H - m.bottom);
      ctx.lineTo(W - m.right, H - m.bottom);
      ctx.stroke();
      ctx.fillStyle = "#333333";
      ctx.font = "11px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (const t of niceTicks(xlo, xhi, 6)) {
        const x = px(t);
        ctx.beginPath();
        ctx.moveTo(x, H - m.bottom);
        ctx.lineTo(x, H - m.bottom + 4);
        ctx.stroke();
        ctx.fillText(formatTick(t), x, H - m.bottom + 6);
      }
      ctx.fillText(sweep.label, m.left + (W - m.left - m.right) / 2, H - 16);
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const t of niceTicks(ylo, yhi, 4)) {
        const y = py(t);
        ctx.beginPath();
        ctx.moveTo(m.left - 4, y);
        ctx.lineTo(m.left, y);
        ctx.stroke();
        ctx.fillText(formatTick(t), m.left - 6, y);
      }
      ctx.save();
      ctx.translate(14, m.top + (H - m.top - m.bottom) / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center";
      ctx.fillText("cosine similarity", 0, 0);
      ctx.restore();
      if (message !== null) {
        ctx.textAlign = "center";
        ctx.fillStyle = "#888888";
        ctx.fillText(message, m.left + (W - m.left - m.right) / 2, m.top + 20);
        return;
      }
      // Gaps where the location falls outside the transformed image: the line breaks there.
      const points = sweep.curve.map((s, t) => (s === null ? null : [px(values[t]), py(clip(s, ylo, yhi))]));
      ctx.strokeStyle = CHART_LINE;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let drawing = false;
      for (const p of points) {
        if (p === null) { drawing = false; continue; }
        if (drawing) ctx.lineTo(p[0], p[1]);
        else ctx.moveTo(p[0], p[1]);
        drawing = true;
      }
      ctx.stroke();
      ctx.fillStyle = CHART_POINT;
      for (const p of points) {
        if (p === null) continue;
        ctx.beginPath();
        ctx.arc(p[0], p[1], 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
      sweep.points = points;
    }

    _status(q) {
      if (!q) {
        this.statusEl.textContent = this.state.pinned ? "" : "hover an image";
        return;
      }
      const image = this.images[q.image];
      let text = String(image.name) + " \u00b7 " + q.layer + " \u00b7 row " + q.row + ", col " + q.col +
        (this.state.pinned ? " (pinned)" : "");
      if (this.state.options.view === "nmf" && this.nmf) {
        const layer = this._layer(this.nmf.layer);
        const cell = this.mapCell(q, layer);
        const o = ((q.image * layer.h + cell.row) * layer.w + cell.col) * this.nmf.k;
        text += "\n" + this.nmf.labels.map((label, j) => label + ": " + this.nmf.weights[o + j].toFixed(3)).join("   ");
      }
      this.statusEl.textContent = text;
    }

    // Test and benchmark hooks.
    setQuery(q) {
      this.state.hover = { layer: String(q.layer), image: q.image, row: q.row, col: q.col };
      this.render();
    }

    clearQuery() {
      this.state.hover = null;
      this.state.pinned = null;
      this.render();
    }

    pin(q) {
      const target = q || this._query();
      this.state.pinned = target ? { layer: String(target.layer), image: target.image, row: target.row, col: target.col } : null;
      this.render();
    }

    chartData(index) {
      const sweep = this.sweeps[index];
      return {
        values: sweep.values.slice(),
        similarities: sweep.curve ? sweep.curve.slice() : null,
        points: sweep.points ? sweep.points.map((p) => (p ? p.slice() : null)) : null,
      };
    }
  }

  function initAll() {
    window.convscopeViewers = window.convscopeViewers || [];
    for (const root of document.querySelectorAll(".convscope-viewer")) {
      if (root.getAttribute("data-convscope-initialised")) continue;
      root.setAttribute("data-convscope-initialised", "1");
      const viewer = new Viewer(root);
      viewer.ready.catch(() => undefined); // the error is shown in the page; tests await ready
      window.convscopeViewers.push(viewer);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", initAll);
  else initAll();
})();
