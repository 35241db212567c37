/* S2VNet browser front-end: slice viewer and click-refinement client. No dependencies. */
(() => {
  "use strict";

  const API = "api/";        // relative, so the page also works behind a path prefix
  const CACHE_LIMIT = 300;   // slice images + label slices kept in memory (LRU)
  const POLL_MS = 250;
  const VIEW_MAX_PX = 640;
  const WHEEL_STEP = 40;     // wheel delta (px) per slice; small trackpad deltas accumulate

  // The single mutable application state.
  const state = {
    info: null, session: null, classes: new Map(), active: null,
    z: 0, window: 400, level: 40, opacity: 0.45,
    busy: false, busyToken: 0, busyLabel: "", busyT0: 0, pollSession: false,
    stage: { text: "", value: 0, max: 0 },
    renderToken: 0, cache: new Map(), pending: null, wheelAcc: 0, overlay: null,
  };
  window.s2v = { session: null, lastLatencyMs: null, lastRoundMs: null, overlayVersion: null };

  const $ = (id) => document.getElementById(id);
  const element = (tag, props = {}) => Object.assign(document.createElement(tag), props);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const elapsed = () => ((performance.now() - state.busyT0) / 1000).toFixed(1);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const sessionUrl = (suffix) => `${API}sessions/${encodeURIComponent(state.session.id)}${suffix}`;

  // --- HTTP

  async function errorFrom(res) {
    let message = `${res.status} ${res.statusText}`.trim();
    try { const body = await res.json(); if (body && body.error) message = String(body.error); } catch { /* not JSON */ }
    return Object.assign(new Error(message), { status: res.status });
  }

  async function request(url, init) {
    const res = await fetch(url, init);
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  const getJson = async (url) => (await request(url)).json();
  const postJson = async (url, body = {}) => (await request(url,
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();

  async function uploadFile(file, modality) {
    const url = `${API}sessions/upload?name=${encodeURIComponent(file.name)}&modality=${encodeURIComponent(modality)}`;
    const init = { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file };
    return (await request(url, init)).json();
  }

  function closeSession(id) {
    fetch(`${API}sessions/${encodeURIComponent(id)}`, { method: "DELETE", keepalive: true }).catch(() => {});
  }

  // --- cache: promises (not values), so concurrent requests for one slice share a fetch

  function cached(key, load) {
    const cache = state.cache;
    if (cache.has(key)) {  // re-insert: Map order doubles as LRU order
      const hit = cache.get(key);
      cache.delete(key); cache.set(key, hit);
      return hit;
    }
    const promise = load();
    cache.set(key, promise);
    promise.catch(() => { if (cache.get(key) === promise) cache.delete(key); });
    if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value);
    return promise;
  }

  function getSlice(z) {
    const { window: w, level: l } = state;
    const url = sessionUrl(`/slices/${z}.png?window=${w}&level=${l}`);
    return cached(`${state.session.id}|s|${z}|${w}|${l}`, async () => createImageBitmap(await (await request(url)).blob()));
  }

  function getLabels(z, version) {
    const [, rows, cols] = state.session.shape;
    const url = sessionUrl(`/labels/${z}.raw?v=${version}`);  // ?v= also defeats HTTP caching
    return cached(`${state.session.id}|l|${z}|${version}`, async () => {
      const res = await fetch(url);
      if (res.status === 409) return null;  // not segmented yet
      if (!res.ok) throw await errorFrom(res);
      const data = new Uint8Array(await res.arrayBuffer());
      if (data.length !== rows * cols) throw new Error(`labels of slice ${z}: expected ${rows * cols} bytes, got ${data.length}`);
      return data;
    });
  }

  // --- drawing

  async function render() {
    const s = state.session;
    if (!s) return;
    const token = ++state.renderToken, z = state.z;
    try {
      const [image, labels] = await Promise.all([getSlice(z), s.segmented ? getLabels(z, s.version) : null]);
      if (token !== state.renderToken) return;  // a newer render superseded this one
      draw(image, labels, z);
      window.s2v.overlayVersion = s.version;
      for (const n of [z + 1, z - 1]) {  // prefetch neighbours for smooth scrolling
        if (n < 0 || n >= s.shape[0]) continue;
        getSlice(n).catch(() => {});
        if (s.segmented) getLabels(n, s.version).catch(() => {});
      }
    } catch (err) { if (token === state.renderToken) showError(err); }
  }

  function draw(image, labels, z) {
    const canvas = $("view"), ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (labels && state.opacity > 0) drawOverlay(ctx, labels);
    drawMarkers(z);
  }

  function drawOverlay(ctx, labels) {
    const { width, height } = ctx.canvas;
    // Lookup table label -> RGBA pixel; hidden classes and background stay transparent.
    const lut = new Uint32Array(256), lutBytes = new Uint8Array(lut.buffer);
    for (const c of state.classes.values()) if (c.visible && c.id > 0 && c.id < 256) lutBytes.set([...c.rgb, 255], c.id * 4);
    const image = new ImageData(width, height), pixels = new Uint32Array(image.data.buffer);
    for (let i = 0; i < pixels.length; i++) pixels[i] = lut[labels[i]];
    const off = state.overlay || (state.overlay = element("canvas"));
    Object.assign(off, { width, height }).getContext("2d").putImageData(image, 0, 0);
    ctx.globalAlpha = state.opacity;
    ctx.drawImage(off, 0, 0);
    ctx.globalAlpha = 1;
  }

  // Markers go on their own canvas at screen resolution so they stay crisp on small images.
  function drawMarkers(z) {
    const view = $("view"), layer = $("markers"), dpr = window.devicePixelRatio || 1;
    const cssW = view.clientWidth, cssH = view.clientHeight;
    Object.assign(layer, { width: Math.round(cssW * dpr), height: Math.round(cssH * dpr) });
    Object.assign(layer.style, { width: `${cssW}px`, height: `${cssH}px` });
    const ctx = layer.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const clicks = (state.session.clicks || []).flat();
    if (state.pending) clicks.push(state.pending);
    for (const { display: [slice, row, col], positive, class: id } of clicks) {
      if (slice !== z) continue;
      const cls = state.classes.get(id);
      drawMarker(ctx, ((col + 0.5) * cssW) / view.width, ((row + 0.5) * cssH) / view.height, positive, cls ? cls.css : "#fff");
    }
  }

  function drawMarker(ctx, x, y, positive, color) {
    const r = 5;
    ctx.beginPath();
    if (positive) {  // filled dot with a white edge
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      Object.assign(ctx, { fillStyle: color, lineWidth: 1.5, strokeStyle: "#fff" });
      ctx.fill(); ctx.stroke();
      return;
    }
    ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r);  // an X with a dark edge
    ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
    Object.assign(ctx, { lineCap: "round", lineWidth: 4.5, strokeStyle: "#111" });
    ctx.stroke();
    Object.assign(ctx, { lineWidth: 2, strokeStyle: color });
    ctx.stroke();
  }

  // CSS size with the physical aspect ratio (row and col spacing may differ), fitting the view.
  function fitCanvas() {
    const s = state.session;
    if (!s) return;
    const [, rows, cols] = s.shape, [, rowMm, colMm] = s.spacing;
    const physW = cols * (colMm > 0 ? colMm : 1), physH = rows * (rowMm > 0 ? rowMm : 1);
    const avail = Math.max(200, Math.min(VIEW_MAX_PX, $("viewer").clientWidth - 16, window.innerHeight - 150));
    const scale = avail / Math.max(physW, physH);
    $("view").style.width = `${Math.round(physW * scale)}px`;
    $("view").style.height = `${Math.round(physH * scale)}px`;
  }

  // --- UI state

  function setStatus(text, kind = "") {
    Object.assign($("status"), { textContent: text, className: kind ? `status ${kind}` : "status" });
  }

  function showError(err) {
    setStatus(err && err.message ? err.message : String(err), "error");
  }

  function updateControls() {
    const s = state.session, busy = state.busy;
    for (const id of ["scan-select", "upload-input", "modality"]) $(id).disabled = busy;
    $("upload-label").classList.toggle("disabled", busy);
    $("open-scan").disabled = busy || !$("scan-select").value;
    $("slice-slider").disabled = !s;
    $("auto-btn").disabled = busy || !s;
    $("undo-btn").disabled = busy || !s || !s.rounds;
    $("reset-btn").disabled = $("download-btn").disabled = $("download-dcm-btn").disabled = busy || !s || !s.segmented;
    $("download-dcm-btn").hidden = !s || !s.dicom;  // DICOM-SEG references the DICOM series the scan came from
  }

  function updateSessionInfo() {
    const s = state.session;
    $("scan-name").textContent = s ? s.name : "";
    if (s) {
      const spacing = s.spacing.map((v) => Number(v).toFixed(2)).join(" × ");
      const rounds = s.segmented ? plural(s.rounds, "click round") : "not segmented";
      $("scan-info").textContent = `${s.modality} · ${s.shape.join(" × ")} vox · ${spacing} mm · ${rounds}`;
    }
    const vols = s && s.volumes_ml;
    for (const c of state.classes.values()) {
      const v = vols ? (vols[c.name] ?? vols[String(c.id)]) : undefined;
      c.volEl.textContent = typeof v === "number" ? `${v.toFixed(1)} ml` : "–";
    }
  }

  function setSlice(z) {
    if (!state.session) return;
    const slices = state.session.shape[0];
    state.z = Math.max(0, Math.min(slices - 1, z));
    $("slice-slider").value = String(state.z);
    $("slice-label").textContent = `slice ${state.z + 1} / ${slices}`;
    return render();
  }

  function setWindowLevel(w, l, redraw = true) {
    const width = Number(w), level = Number(l);
    if (width > 0 && Number.isFinite(level)) Object.assign(state, { window: width, level });
    $("window").value = String(state.window);
    $("level").value = String(state.level);
    for (const b of document.querySelectorAll("[data-preset]")) {
      const wl = presetValues(b.dataset.preset);
      b.classList.toggle("active", !!wl && Number(wl[0]) === state.window && Number(wl[1]) === state.level);
    }
    if (redraw) render();
  }

  function presetValues(name) {
    if (name === "auto") return state.session ? state.session.auto_window : null;
    return state.info && state.info.presets ? state.info.presets[name] : null;
  }

  // Runs one server operation with busy UI, progress polling and error display.
  // Resolves to the operation's result, or null when it failed (the error is shown).
  async function runBusy(label, work, pollSession = true) {
    if (state.busy) return null;
    const token = ++state.busyToken, stage = { text: "", value: 0, max: 0 };
    Object.assign(state, { busy: true, busyLabel: label, busyT0: performance.now(), pollSession, stage });
    document.body.dataset.busy = "1";
    updateControls();
    pollLoop(token);
    try { return await work(); }
    catch (err) { showError(err); return null; }
    finally {
      state.busy = false;
      document.body.dataset.busy = "0";
      Object.assign($("progress"), { max: 1, value: 0 }).classList.add("idle");
      updateControls();
    }
  }

  async function pollLoop(token) {
    const current = () => state.busy && state.busyToken === token;
    while (current()) {
      if (state.pollSession && state.session) {
        try {
          const p = await getJson(sessionUrl("/progress"));
          if (p.busy && current()) {
            const text = p.total ? `${p.stage || "working"} ${p.done}/${p.total}` : p.stage || "";
            state.stage = { text, value: p.done || 0, max: p.total || 0 };
          }
        } catch { /* progress is best effort */ }
      }
      if (!current()) return;
      const { text, value, max } = state.stage, bar = $("progress");
      bar.classList.remove("idle");
      if (max > 0) Object.assign(bar, { max, value: Math.min(value, max) });
      else bar.removeAttribute("value");  // indeterminate
      setStatus(`${state.busyLabel}${text ? ` — ${text}` : ""} · ${elapsed()} s`);
      await sleep(POLL_MS);
    }
  }

  // --- sessions and actions

  // Stores a session info and redraws; `fresh` = a newly opened scan (resets the view).
  function applySession(info, fresh = false) {
    state.session = window.s2v.session = info;
    if (fresh) {
      state.cache.clear();
      const [slices, rows, cols] = info.shape;
      Object.assign($("view"), { width: cols, height: rows });
      $("slice-slider").max = String(slices - 1);
      $("modality").value = info.modality;
      const presets = (state.info && state.info.presets) || {};
      const wl = (info.modality === "CT" && presets.abdomen) || info.auto_window || [state.window, state.level];
      setWindowLevel(wl[0], wl[1], false);
      $("placeholder").hidden = true;
      fitCanvas();
      state.z = Math.floor(slices / 2);
    }
    updateSessionInfo();
    updateControls();
    return setSlice(state.z);  // updates the slider and renders
  }

  async function openSession(label, create) {
    const previous = state.session;
    const info = await runBusy(label, async () => {
      const s = await create();
      if (previous) closeSession(previous.id);
      await applySession(s, true);
      return s;
    }, false);
    if (info) setStatus(`opened ${info.name} in ${elapsed()} s`, "ok");
  }

  function openFromPath() {
    const path = $("scan-select").value;
    if (path) openSession(`Opening ${path}`, () => postJson(`${API}sessions`, { path, modality: $("modality").value }));
  }

  function openUpload() {
    const input = $("upload-input"), file = input.files && input.files[0];
    input.value = "";  // allow uploading the same file again
    if (!file) return;
    const limit = state.info && state.info.max_upload_mb;
    if (limit && file.size > limit * 1048576) {
      showError(new Error(`${file.name} is ${Math.round(file.size / 1048576)} MB; the server accepts at most ${limit} MB`));
      return;
    }
    openSession(`Uploading ${file.name}`, () => uploadFile(file, $("modality").value));
  }

  async function sessionAction(label, path, doneText) {
    if (!state.session) return;
    const info = await runBusy(label, async () => {
      const s = await postJson(sessionUrl(path), {});
      await applySession(s);
      return s;
    });
    if (info) setStatus(doneText(info), "ok");
  }

  // While a click round runs, the server serves the clicked slice's final labels early (a newer labels version);
  // draw them at once. The round's own answer replaces them (and every other slice) when it ends.
  async function showPreview(version, round, shown) {
    try {
      const p = await getJson(sessionUrl(`/labels/version?after=${version}&timeout=10`));
      if (round.done || p.version <= version) return;
      state.session = window.s2v.session = { ...state.session, version: p.version };
      await render();
      if (!round.done) shown();
    } catch { /* the preview is best effort: the round's answer follows */ }
  }

  // Mouse position -> image pixel (row, col) from the canvas's pixel vs CSS size; null outside.
  function pixelAt(e) {
    const canvas = $("view"), rect = canvas.getBoundingClientRect();
    if (!rect.width || !rect.height) return null;
    const col = Math.floor(((e.clientX - rect.left) * canvas.width) / rect.width);
    const row = Math.floor(((e.clientY - rect.top) * canvas.height) / rect.height);
    return col >= 0 && row >= 0 && col < canvas.width && row < canvas.height ? { row, col } : null;
  }

  function onCanvasMouseDown(e) {
    const t0 = performance.now();
    if (e.button !== 0 && e.button !== 2) return;
    e.preventDefault();
    const pos = pixelAt(e);
    if (!state.session || state.busy || state.active === null || !pos) return;
    const positive = e.button === 0 && !e.shiftKey;
    const click = { class: state.active, positive, display: [state.z, pos.row, pos.col] };
    const name = state.classes.get(state.active).name;
    state.pending = click;  // drawn at once as a marker while the server works
    runBusy(`${positive ? "Adding" : "Removing"} ${name} (round ${state.session.rounds + 1})`, async () => {
      render();
      const round = { done: false, drawn: false };
      const shown = () => {  // the first overlay this click changed: the preview, or the round's result
        if (!round.drawn) window.s2v.lastLatencyMs = Math.round(performance.now() - t0);
        round.drawn = true;
      };
      showPreview(state.session.version, round, shown);
      const s = await postJson(sessionUrl("/clicks"), { clicks: [click] }).finally(() => {
        state.pending = null;
        round.done = true;
      });
      await applySession(s);
      shown();
      window.s2v.lastRoundMs = Math.round(performance.now() - t0);
      return s;
    }).then((s) => {
      if (s) setStatus(`round ${s.rounds} done in ${elapsed()} s`, "ok");
      else render();  // drop the pending marker after an error
    });
  }

  function onWheel(e) {
    if (!state.session) return;
    e.preventDefault();
    const delta = e.deltaMode === 0 ? e.deltaY : e.deltaY * WHEEL_STEP;
    state.wheelAcc = Math.abs(delta) >= WHEEL_STEP ? delta : state.wheelAcc + delta;
    if (Math.abs(state.wheelAcc) < WHEEL_STEP) return;
    setSlice(state.z - Math.sign(state.wheelAcc));  // wheel up = towards superior
    state.wheelAcc = 0;
  }

  function onKeyDown(e) {
    if (!state.session || e.altKey || e.ctrlKey || e.metaKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown")) return;
    // Leave arrows to fields that use them; on radios, checkboxes and buttons they scroll slices.
    if (e.target.matches && e.target.matches("input[type=number], input[type=text], input[type=range], select, textarea")) return;
    e.preventDefault();
    setSlice(state.z + (e.key === "ArrowUp" ? 1 : -1));
  }

  function download(endpoint, suffix) {
    const s = state.session;
    if (!s || !s.segmented) return;
    const base = s.name.replace(/\/+$/, "").replace(/\.(nii\.gz|nii|nrrd|zip)$/i, "") || "segmentation";
    const a = element("a", { href: sessionUrl(endpoint), download: `${base}${suffix}` });
    document.body.append(a);
    a.click();
    a.remove();
  }

  // --- setup

  function colorToRgb(color) {  // "#rrggbb" -> [r, g, b]; grey when unparsable
    const hex = /^#?([0-9a-f]{6})$/i.exec(String(color).trim());
    const n = hex ? parseInt(hex[1], 16) : 0x808080;
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function buildClassList(classes) {
    const list = $("class-list");
    for (const c of classes) {
      const rgb = colorToRgb(c.color), id = Number(c.id);
      const entry = { id, name: String(c.name), rgb, css: `rgb(${rgb.join(",")})`, visible: true };
      const vis = element("input", { type: "checkbox", checked: true, id: `cls-vis-${id}`, title: "Show / hide" });
      vis.addEventListener("change", () => { entry.visible = vis.checked; updateToggleAll(); render(); });
      const swatch = element("label", { className: "swatch", htmlFor: vis.id, title: "Show / hide" });
      swatch.style.backgroundColor = entry.css;
      const pick = element("input", { type: "radio", name: "active-class", value: String(id), id: `cls-active-${id}`, title: "Active class for clicks" });
      pick.addEventListener("change", () => { if (pick.checked) state.active = id; });
      const label = element("label", { className: "name", htmlFor: pick.id, textContent: entry.name, title: entry.name });
      Object.assign(entry, { visEl: vis, volEl: element("span", { className: "vol", id: `vol-${id}`, textContent: "–" }) });
      const row = element("li", { className: "class-row" });
      row.append(vis, swatch, label, entry.volEl, pick);
      list.append(row);
      state.classes.set(id, entry);
      if (state.active === null) { state.active = id; pick.checked = true; }
    }
  }

  const anyHidden = () => [...state.classes.values()].some((c) => !c.visible);
  const updateToggleAll = () => { $("toggle-all").textContent = anyHidden() ? "Show all" : "Hide all"; };

  function toggleAll() {
    const show = anyHidden();
    for (const c of state.classes.values()) c.visible = c.visEl.checked = show;
    updateToggleAll();
    render();
  }

  function buildPresets(presets) {
    for (const name of [...Object.keys(presets || {}), "auto"]) {
      const b = element("button", { type: "button", textContent: name, className: "small" });
      b.dataset.preset = name;
      b.addEventListener("click", () => {
        const wl = presetValues(name);
        if (wl) setWindowLevel(wl[0], wl[1]);
      });
      $("presets").append(b);
    }
  }

  function fillScans(data) {
    const enabled = !!(data && data.enabled), scans = enabled && Array.isArray(data.scans) ? data.scans : [];
    $("scan-group").hidden = !enabled;
    $("scan-select").replaceChildren(...scans.map((p) => new Option(String(p), String(p))));
    if (enabled && !scans.length) $("scan-select").append(new Option("(no scans found)", ""));
  }

  function wireEvents() {
    const on = (id, type, fn, opts) => $(id).addEventListener(type, fn, opts);
    on("view", "mousedown", onCanvasMouseDown);
    on("view", "contextmenu", (e) => e.preventDefault());
    on("view-wrap", "wheel", onWheel, { passive: false });
    on("slice-slider", "input", (e) => setSlice(Number(e.target.value)));
    on("window", "change", () => setWindowLevel($("window").value, state.level));
    on("level", "change", () => setWindowLevel(state.window, $("level").value));
    on("opacity", "input", (e) => {
      state.opacity = Number(e.target.value);
      $("opacity-value").textContent = state.opacity.toFixed(2);
      render();
    });
    on("toggle-all", "click", toggleAll);
    on("open-scan", "click", openFromPath);
    on("scan-select", "change", updateControls);
    on("upload-input", "change", openUpload);
    on("auto-btn", "click", () => sessionAction("Segmenting all classes", "/auto", () => `segmentation done in ${elapsed()} s`));
    on("undo-btn", "click", () => sessionAction("Undoing last round", "/undo",
      (s) => `undone in ${elapsed()} s (${plural(s.rounds, "round")} left)`));
    on("reset-btn", "click", () => sessionAction("Resetting", "/reset", () => `reset to the automatic result in ${elapsed()} s`));
    on("download-btn", "click", () => download("/segmentation.nii.gz", "_seg.nii.gz"));
    on("download-dcm-btn", "click", () => download("/segmentation.dcm", "_s2vnet.seg.dcm"));
    document.addEventListener("keydown", onKeyDown);
    window.addEventListener("resize", () => { fitCanvas(); render(); });
    window.addEventListener("pagehide", () => { if (state.session) closeSession(state.session.id); });
    // pagehide closed the session; a page restored from the back/forward cache must start afresh.
    window.addEventListener("pageshow", (e) => { if (e.persisted) window.location.reload(); });
  }

  async function init() {
    document.body.dataset.busy = "0";
    wireEvents();
    updateControls();
    try {
      const [info, scans] = await Promise.all([
        getJson(`${API}info`),
        getJson(`${API}scans`).catch(() => ({ enabled: false, scans: [] })),
      ]);
      state.info = info;
      $("version").textContent = info.version ? `v${info.version}` : "";
      buildPresets(info.presets);
      buildClassList(info.classes || []);
      fillScans(scans);
      setWindowLevel(state.window, state.level, false);
      setStatus("Open or upload a scan.");
    } catch (err) { showError(err); }
    updateControls();
  }

  init();
})();
