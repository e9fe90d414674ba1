// The excnet page: upload once, then retune the curve on a preview without a round trip.
// The server returns a downscaled preview and the base layer of the photo; the gain
// (f(b) + 1e-5)/(b + 1e-5) of the curve f(x; s*phi_s, h*s*phi_h) (scaled down to stay
// monotonic when the curve says so) is applied here, per pixel, exactly as the pipeline does. The full-resolution download applies the chosen curve on the server.
"use strict";

const API = "/api/v1";
const PREVIEW_SIZE = 1024;
const TOKEN_KEY = "excnet-token";  // in sessionStorage: asked once per tab
const $ = (id) => document.getElementById(id);

// excnet/curve.py expose: linear light times 2**stops, rolled off above KNEE, re-encoded.
const KNEE = 0.75;
function toLinear(v) {
  return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
}
function toSrgb(v) {
  v = Math.max(v, 0);
  return v <= 0.0031308 ? v * 12.92 : 1.055 * Math.pow(v, 1 / 2.4) - 0.055;
}
function expose(x, stops) {
  if (stops === 0) return x;
  let v = toLinear(x) * Math.pow(2, stops);
  const over = Math.max(v - KNEE, 0);
  v = v - over - (1 - KNEE) * Math.expm1(-over / (1 - KNEE));
  return toSrgb(v);
}
// The S-curve of the method (excnet/curve.py).
function fDelta(x) {
  return 5 * x * Math.exp(-14 * Math.pow(Math.max(x, 0), 1.6));
}
function sCurve(x, phiS, phiH) {
  return x + phiS * fDelta(x) - phiH * fDelta(1 - x);
}
// excnet/curve.py monotonic_limit: the largest t*(phiS, phiH), t <= 1, with f' >= 0 on [0, 1].
const SLOPE_N = 4097;
const SLOPE = (() => {
  const x = (i) => i / (SLOPE_N - 1);
  const d = new Float64Array(SLOPE_N);
  for (let i = 0; i < SLOPE_N; i++) {  // np.gradient: one-sided at the ends, central inside
    const lo = Math.max(i - 1, 0), hi = Math.min(i + 1, SLOPE_N - 1);
    d[i] = (fDelta(x(hi)) - fDelta(x(lo))) / (x(hi) - x(lo));
  }
  return d;
})();
function monotonicLimit(phiS, phiH) {
  let worst = -Infinity;
  for (let i = 0; i < SLOPE_N; i++) {
    worst = Math.max(worst, -(phiS * SLOPE[i] + phiH * SLOPE[SLOPE_N - 1 - i]));
  }
  const t = worst <= 1 ? 1 : 1 / worst;
  return [t * phiS, t * phiH];
}

const state = { file: null, estimate: null, source: null, base: null, limits: null,
                retry: null };

// Every API call: with the token, if one was given; a 401 asks for it (again) and remembers
// what to retry once it is given.
async function api(path, options, retry) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) {
    state.retry = retry;
    askToken(token ? "The server did not accept this token; please enter it again."
                   : "This server needs an access token.");
  }
  return r;
}

function askToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("auth-message").textContent = message;
  $("auth").hidden = false;
  $("token").focus();
}

function useToken(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("auth").hidden = true;
  showError("");
  const retry = state.retry;
  state.retry = null;
  if (retry) retry();
}

function controls() {
  return {
    phi_s: Number($("phi-s").value),
    phi_h: Number($("phi-h").value),
    strength: Number($("strength").value),
    highlight_scale: Number($("highlight").value),
    monotonic: state.estimate ? Boolean(state.estimate.curve.monotonic) : true,
    second_pass: state.estimate ? Boolean(state.estimate.curve.second_pass) : true,
    // what the adaptive rule decided for this photo (excnet/adapt.py); kept as estimated
    exposure: state.estimate ? Number(state.estimate.curve.exposure || 0) : 0,
    amount: state.estimate ? Number(state.estimate.curve.amount ?? 1) : 1,
  };
}

// [phi_s, phi_h, phi_s of the second pass] as applied (Curve.applied and Curve.second): the
// second pass is the shadow lift the monotonic limit withheld. Made once per update.
function applied(c) {
  const s = c.strength * c.amount;
  const a = [s * c.phi_s, c.highlight_scale * s * c.phi_h];
  if (!c.monotonic) return [...a, 0];
  const [aS, aH] = monotonicLimit(a[0], Math.max(a[1], 0));
  const extra = c.second_pass ? a[0] - aS : 0;
  return [aS, aH, extra > 1e-9 ? monotonicLimit(extra, 0)[0] : 0];
}

// The whole curve: exposure, then the S-curve, then its second pass (Curve.__call__).
function curveAt(c, a, x) {
  const y = sCurve(expose(x, c.strength * c.exposure), a[0], a[1]);
  return a[2] ? sCurve(y, a[2], 0) : y;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  if (response.status === 503) return "The server is busy; please try again in a moment.";
  return `The server answered ${response.status} ${response.statusText}.`;
}

function plainWords(status, message) {
  if (status === 401) return `This server needs a valid access token. ${message}`;
  if (status === 413) return `This photo is too large. ${message}`;
  if (status === 415) return `This file is not a photo excnet can read. ${message}`;
  if (status === 503) return `The server is busy right now; please try again shortly. ${message}`;
  return `Could not restore this photo: ${message}`;
}

async function loadLimits() {
  try {
    const r = await fetch(`${API}/health`);
    if (!r.ok) return;
    const health = await r.json();
    state.limits = health.limits;
    if (health.auth && !sessionStorage.getItem(TOKEN_KEY)) {
      askToken("This server needs an access token.");
    }
    const bytes = health.limits.max_upload_bytes;
    const mb = (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0);
    const mp = (health.limits.max_pixels / 1e6).toFixed(0);
    $("limits").textContent = `JPEG, PNG, TIFF, WebP, HEIC or camera RAW; up to ${mb} MB and ${mp} megapixels.`;
  } catch (_) { /* the upload will report problems */ }
}

async function imagePixels(url, canvas) {
  const img = new Image();
  img.src = url;
  await img.decode();
  const c = canvas || document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height);
}

// A new photo that fails replaces the last one: its result would otherwise stay on the page,
// and Download would fetch the earlier photo under the new one's error.
function forgetUnless(file) {
  if (file === state.file) return;
  state.file = null;
  $("result").hidden = true;
}

async function upload(file) {
  showError("");
  if (!file) return;
  if (state.limits && file.size > state.limits.max_upload_bytes) {
    forgetUnless(file);
    showError(`This photo is too large: ${file.name} has ${file.size} bytes, the limit is ` +
              `${state.limits.max_upload_bytes} bytes.`);
    return;
  }
  setStatus(`Estimating the curve for ${file.name}…`);
  document.body.classList.add("busy");
  const form = new FormData();
  form.append("file", file);
  const solver = $("solver").value;
  if (solver) form.append("solver", solver);
  form.append("adapt", $("adapt").value);
  try {
    const r = await api(`${API}/estimate?preview=${PREVIEW_SIZE}`, { method: "POST", body: form },
                        () => upload(file));
    if (!r.ok) {
      setStatus("");
      forgetUnless(file);
      showError(plainWords(r.status, await errorMessage(r)));
      return;
    }
    const est = await r.json();
    state.file = file;
    state.estimate = est;
    state.source = await imagePixels(est.preview.image, $("before"));
    const base = await imagePixels(est.preview.base);
    state.base = new Uint8Array(base.width * base.height);
    for (let i = 0; i < state.base.length; i++) state.base[i] = base.data[4 * i];
    $("after").width = state.source.width;
    $("after").height = state.source.height;
    $("result").hidden = false;
    resetControls();
    setStatus(`${est.name}: ${est.width} × ${est.height} pixels. Move the sliders to tune it.`);
  } catch (err) {
    setStatus("");
    forgetUnless(file);
    showError(`Could not reach the server (${err.message}).`);
  } finally {
    document.body.classList.remove("busy");
  }
}

function setSlider(id, value) {
  const el = $(id);
  if (value < Number(el.min)) el.min = String(Math.floor(value * 10) / 10);
  if (value > Number(el.max)) el.max = String(Math.ceil(value * 10) / 10);
  el.value = String(value);
}

function resetControls() {
  const c = state.estimate.curve;
  setSlider("phi-s", c.phi_s);
  setSlider("phi-h", c.phi_h);
  setSlider("strength", c.strength);
  setSlider("highlight", c.highlight_scale);
  update();
}

// Restored preview: every colour channel times the gain of the pixel's base-layer value.
function renderPreview(c) {
  const a = applied(c);
  const gain = new Float64Array(256);
  for (let v = 0; v < 256; v++) {
    const b = v / 255;
    gain[v] = (curveAt(c, a, b) + 1e-5) / (b + 1e-5);
  }
  const src = state.source.data;
  const out = new ImageData(state.source.width, state.source.height);
  const dst = out.data; // Uint8ClampedArray: clamps and rounds half to even, as np.rint
  for (let i = 0, p = 0; i < state.base.length; i++, p += 4) {
    const g = gain[state.base[i]];
    dst[p] = src[p] * g;
    dst[p + 1] = src[p + 1] * g;
    dst[p + 2] = src[p + 2] * g;
    dst[p + 3] = 255;
  }
  $("after").getContext("2d").putImageData(out, 0, 0);
}

function drawCurve(c) {
  const a = applied(c);
  const [aS, aH, a2] = a;
  const pts = [];
  for (let i = 0; i <= 128; i++) {
    const x = i / 128;
    const y = Math.min(1.2, Math.max(-0.2, curveAt(c, a, x)));
    pts.push(`${x.toFixed(4)},${(1 - y).toFixed(4)}`);
  }
  $("curve").setAttribute("d", `M${pts.join(" L")}`);
  const e = state.estimate;
  $("phi-text").textContent =
    `φs = ${c.phi_s.toFixed(3)}, φh = ${c.phi_h.toFixed(3)} · applied ` +
    `${aS.toFixed(3)}, ${aH.toFixed(3)}` +
    (a2 ? ` then ${a2.toFixed(3)}` : "") +
    ` · estimated ${e.curve.phi_s.toFixed(3)}, ` +
    `${e.curve.phi_h.toFixed(3)} by ${e.solver} in ${e.iterations} iterations` +
    (c.exposure || c.amount !== 1
      ? ` · adaptive: exposure +${c.exposure.toFixed(2)} EV, ${Math.round(100 * c.amount)}% of φ`
      : "");
}

function update() {
  const c = controls();
  $("phi-s-out").textContent = c.phi_s.toFixed(3);
  $("phi-h-out").textContent = c.phi_h.toFixed(3);
  $("strength-out").textContent = c.strength.toFixed(2);
  $("highlight-out").textContent = c.highlight_scale.toFixed(2);
  drawCurve(c);
  renderPreview(c);
}

function setCompare() {
  const v = $("compare").value;
  $("after").style.clipPath = `inset(0 0 0 ${v}%)`;
  $("divider").style.left = `${v}%`;
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

function saveBlob(blob, filename) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

async function download() {
  if (!state.file) return;
  showError("");
  const button = $("download");
  button.disabled = true;
  setStatus("Restoring the full-resolution photo…");
  const form = new FormData();
  form.append("file", state.file);
  // the whole curve as the params JSON: the server renders it the same way
  form.append("params", JSON.stringify(controls()));
  form.append("denoise", $("denoise").value);
  try {
    const r = await api(`${API}/apply`, { method: "POST", body: form }, download);
    if (!r.ok) {
      setStatus("");
      showError(plainWords(r.status, await errorMessage(r)));
      return;
    }
    const match = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
    saveBlob(await r.blob(), match ? match[1] : `${stem(state.file.name)}.excnet.jpg`);
    setStatus("Downloaded the full-resolution photo.");
  } catch (err) {
    setStatus("");
    showError(`Could not reach the server (${err.message}).`);
  } finally {
    button.disabled = false;
  }
}

function saveParams() {
  if (!state.file) return;
  const json = JSON.stringify(controls(), null, 2) + "\n";
  saveBlob(new Blob([json], { type: "application/json" }), `${stem(state.file.name)}.curve.json`);
}

function init() {
  loadLimits();
  $("auth").addEventListener("submit", useToken);
  $("file").addEventListener("change", (e) => upload(e.target.files[0]));
  for (const id of ["phi-s", "phi-h", "strength", "highlight"]) {
    $(id).addEventListener("input", update);
  }
  $("compare").addEventListener("input", setCompare);
  $("reset").addEventListener("click", resetControls);
  $("download").addEventListener("click", download);
  $("save-params").addEventListener("click", saveParams);
  $("solver").addEventListener("change", () => state.file && upload(state.file));
  $("adapt").addEventListener("change", () => state.file && upload(state.file));
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
  setCompare();
}

init();
