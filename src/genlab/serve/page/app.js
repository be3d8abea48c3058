// genlab serve: the page. Plain JS, no build step. Everything it shows comes from /v1/models: a model's
// controls are built from the options its family declares, samples are shown as the modality renders them.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid != null) e.append(kid);
  return e;
};

function apiKey() {
  const m = document.cookie.match(/(?:^|;\s*)genlab_key=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function api(path, body, opts = {}) {
  const headers = {"Content-Type": "application/json", ...(opts.headers || {})};
  const key = apiKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  const res = await fetch(path, {method: body === undefined ? "GET" : "POST", headers,
                                 body: body === undefined ? undefined : JSON.stringify(body), signal: opts.signal});
  if (opts.raw) return res;
  const data = await res.json().catch(() => ({error: {message: res.statusText}}));
  if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
  return data;
}

function show(rendering) {
  const mime = rendering.mime || "";
  if (rendering.text !== undefined) return el("pre", {text: rendering.text});
  const src = `data:${mime};base64,${rendering.b64}`;
  if (mime.startsWith("image/")) return el("img", {src, alt: "sample"});
  if (mime.startsWith("audio/")) return el("audio", {src, controls: ""});
  return el("a", {href: src, download: "sample"}, "download (" + mime + ")");
}

function setStatus(text) { $("#status").textContent = text; }
function fail(out, err) { out.replaceChildren(el("p", {class: "error", text: String(err.message || err)})); }

// -- controls built from the family's declared options ------------------------------------------------
function optionInput(model, opt) {
  const id = "opt-" + model + "-" + opt.name;
  let input;
  if (opt.type === "choice") {
    input = el("select", {"data-opt": opt.name});
    for (const c of opt.choices) input.append(el("option", {value: c, text: c}));
    input.value = opt.default;
  } else if (opt.type === "bool") {
    input = el("input", {type: "checkbox", "data-opt": opt.name});
    input.checked = !!opt.default;
  } else if (opt.name === "prompt") {
    input = el("textarea", {"data-opt": opt.name, placeholder: "prompt"});
  } else {
    input = el("input", {"data-opt": opt.name, type: opt.type === "int" || opt.type === "float" ? "number" : "text",
                         step: opt.type === "float" ? "any" : "1",
                         placeholder: opt.default === null ? "default" : String(opt.default)});
  }
  input.id = id;
  return el("label", {title: opt.help || ""}, opt.name.replace(/_/g, " "), input);
}

function readOptions(card) {
  const out = {};
  for (const input of card.querySelectorAll("[data-opt]")) {
    const name = input.dataset.opt;
    const opt = card._model.options.find(o => o.name === name);
    if (opt.type === "bool") { if (input.checked !== !!opt.default) out[name] = input.checked; continue; }
    const v = input.value;
    if (v === "" || (opt.type === "choice" && v === opt.default)) continue;
    if (opt.type === "int") out[name] = parseInt(v, 10);
    else if (opt.type === "float") out[name] = parseFloat(v);
    else if (opt.type === "list") out[name] = v.split(",").filter(s => s.length);
    else out[name] = v;
  }
  return out;
}

function commonBody(card) {
  const m = card._model;
  const body = {model: m.id, options: readOptions(card)};
  const label = $(".label-select", card);
  if (label && label.value !== "") body.label = parseInt(label.value, 10);
  const seed = $(".seed-input", card).value;
  if (seed !== "") body.seed = parseInt(seed, 10);
  return body;
}

function buildCard(m) {
  const card = el("div", {class: "card", id: "card-" + m.id, "data-model": m.id});
  card._model = m;
  const caps = [m.family, m.kind, m.conditional ? "conditional" : null, m.completions ? "streams text" : null,
                m.interpolation ? "latent space" : null, m.inpainting ? "inpaints" : null].filter(Boolean);
  card.append(el("h2", {text: m.id}), el("div", {class: "meta", text: caps.join(" · ") + " · " +
                                                  m.shape.join("×") + " · likelihood " + m.likelihood}));
  const controls = el("div", {class: "controls"});
  controls.append(el("label", {}, "n", el("input", {class: "n-input", type: "number", min: "1", value: "8"})));
  controls.append(el("label", {}, "seed", el("input", {class: "seed-input", type: "number", placeholder: "random"})));
  if (m.conditional) {
    const sel = el("select", {class: "label-select"}, el("option", {value: "", text: "any"}));
    m.classes.forEach((c, i) => sel.append(el("option", {value: String(i), text: c})));
    controls.append(el("label", {}, "label", sel));
  }
  for (const opt of m.options) controls.append(optionInput(m.id, opt));
  card.append(controls);
  const out = el("div", {class: "output"});
  const buttons = el("div", {class: "controls"});
  buttons.append(el("button", {class: "sample-btn", onclick: () => sample(card, out)}, "Sample"));
  if (m.completions) buttons.append(el("button", {class: "stream-btn", onclick: () => stream(card, out)}, "Stream"));
  card.append(buttons, out);
  if (m.interpolation) card.append(interpolation(card));
  if (m.inpainting) card.append(inpainting(card));
  if (m.completions) $(".n-input", card).value = "1";
  return card;
}

async function sample(card, out) {
  const body = {...commonBody(card), n: parseInt($(".n-input", card).value || "1", 10)};
  out.replaceChildren(el("p", {class: "note", text: "sampling…"}));
  try {
    const res = await api("/v1/samples", body);
    card._last = res;
    out.replaceChildren(show(res.rendering), el("p", {class: "note",
      text: `seed ${res.seed}${res.batched > 1 ? `, batched with ${res.batched - 1} other request(s)` : ""}`}));
    card.dispatchEvent(new CustomEvent("sampled", {detail: res}));
  } catch (e) { fail(out, e); }
}

async function stream(card, out) {
  const opts = readOptions(card);
  const body = {model: card._model.id, prompt: opts.prompt || "", stream: true,
                max_tokens: opts.max_tokens || 64, n: 1};
  for (const k of ["temperature", "top_p", "top_k", "repetition_penalty"]) if (k in opts) body[k] = opts[k];
  const seed = $(".seed-input", card).value;
  if (seed !== "") body.seed = parseInt(seed, 10);
  const pre = el("pre", {class: "stream-out", text: body.prompt});
  out.replaceChildren(pre);
  try {
    const res = await api("/v1/completions", body, {raw: true});
    if (!res.ok) { const d = await res.json(); throw new Error(d.error.message); }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") { pre.classList.add("done"); continue; }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        pre.textContent += chunk.choices[0].text;
      }
    }
  } catch (e) { out.append(el("p", {class: "error", text: String(e.message || e)})); }
}

function interpolation(card) {
  const box = el("div", {class: "sub interp"}, el("h3", {text: "Latent interpolation"}));
  const a = el("input", {class: "interp-a", type: "number", value: "1"});
  const b = el("input", {class: "interp-b", type: "number", value: "2"});
  const steps = el("input", {class: "interp-steps", type: "number", value: "9", min: "2"});
  const slider = el("input", {class: "interp-slider", type: "range", min: "0", max: "8", value: "0", disabled: ""});
  const frame = el("div", {class: "frame interp-frame"});
  let frames = [];
  slider.addEventListener("input", () => {
    if (frames.length) frame.replaceChildren(show(frames[+slider.value]), el("span", {class: "note",
      text: ` t = ${(+slider.value / (frames.length - 1)).toFixed(2)}`}));
  });
  const go = async () => {
    const body = {...commonBody(card), seeds: [parseInt(a.value, 10), parseInt(b.value, 10)],
                  steps: parseInt(steps.value, 10)};
    delete body.seed;
    frame.replaceChildren(el("p", {class: "note", text: "decoding…"}));
    try {
      const res = await api("/v1/interpolate", body);
      frames = res.frames;
      slider.max = String(frames.length - 1);
      slider.value = "0";
      slider.disabled = false;
      slider.dispatchEvent(new Event("input"));
    } catch (e) { fail(frame, e); }
  };
  box.append(el("div", {class: "controls"}, el("label", {}, "seed A", a), el("label", {}, "seed B", b),
                el("label", {}, "frames", steps), el("button", {class: "interp-btn", onclick: go}, "Interpolate")),
             slider, frame);
  return box;
}

function inpainting(card) {
  const m = card._model;
  const [h, w] = m.shape.slice(-2);
  const box = el("div", {class: "sub inpaint"}, el("h3", {text: "Inpaint: draw a sample, paint the region to fill"}));
  const size = 224;
  const canvas = el("canvas", {class: "inpaint-canvas", width: String(size), height: String(size)});
  const ctx = canvas.getContext("2d");
  const mask = new Uint8Array(h * w);
  let image = null, sampleId = null, painting = false;
  const redraw = () => {
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, size, size);
    if (image) {  // the rendering of one sample: an integer upscale of the w×h pixels inside a thin border
      const sx = Math.floor(image.width / w), sy = Math.floor(image.height / h);
      if (sx >= 1 && sy >= 1) ctx.drawImage(image, (image.width - sx * w) / 2, (image.height - sy * h) / 2,
                                            sx * w, sy * h, 0, 0, size, size);
      else ctx.drawImage(image, 0, 0, size, size);
    }
    ctx.fillStyle = "rgba(239,68,68,0.55)";
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++)
      if (mask[i * w + j]) ctx.fillRect(j * size / w, i * size / h, size / w + 0.5, size / h + 0.5);
  };
  const paint = (ev) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((ev.clientX - r.left) / r.width * w), i = Math.floor((ev.clientY - r.top) / r.height * h);
    const rad = Math.max(1, Math.round(Math.min(h, w) / 10));
    for (let di = -rad; di <= rad; di++) for (let dj = -rad; dj <= rad; dj++) {
      const y = i + di, x = j + dj;
      if (y >= 0 && y < h && x >= 0 && x < w) mask[y * w + x] = 1;
    }
    redraw();
  };
  canvas.addEventListener("mousedown", (e) => { painting = true; paint(e); });
  canvas.addEventListener("mousemove", (e) => { if (painting) paint(e); });
  window.addEventListener("mouseup", () => { painting = false; });
  const out = el("div", {class: "output inpaint-out"});
  const draw = async () => {
    try {
      const body = {...commonBody(card), n: 1};
      const res = await api("/v1/samples", body);
      sampleId = res.samples[0].id;
      image = new Image();
      image.onload = redraw;
      image.src = `data:${res.samples[0].rendering.mime};base64,${res.samples[0].rendering.b64}`;
      mask.fill(0);
      box.dataset.ready = "1";
    } catch (e) { fail(out, e); }
  };
  const fill = async () => {
    if (!sampleId) return fail(out, new Error("draw a sample first"));
    const off = document.createElement("canvas");
    off.width = w; off.height = h;
    const octx = off.getContext("2d");
    const img = octx.createImageData(w, h);
    for (let k = 0; k < h * w; k++) {
      const v = mask[k] ? 255 : 0;
      img.data.set([v, v, v, 255], k * 4);
    }
    octx.putImageData(img, 0, 0);
    out.replaceChildren(el("p", {class: "note", text: "filling…"}));
    try {
      const res = await api("/v1/inpaint", {...commonBody(card), sample_id: sampleId, mask: off.toDataURL("image/png")});
      out.replaceChildren(el("span", {class: "note", text: "masked "}), show(res.masked),
                          el("span", {class: "note", text: " filled "}), show(res.rendering));
      out.dataset.done = "1";
    } catch (e) { fail(out, e); }
  };
  box.append(el("div", {class: "controls"}, el("button", {class: "inpaint-draw", onclick: draw}, "Draw a sample"),
                el("button", {class: "inpaint-clear", onclick: () => { mask.fill(0); redraw(); }}, "Clear mask"),
                el("button", {class: "inpaint-btn", onclick: fill}, "Fill")), canvas, out);
  return box;
}

// -- arena ---------------------------------------------------------------------------------------------------
const arena = {pair: null, shown: 0, busy: false};

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, "0")).join("");
}

async function nextPair() {
  const status = $("#arena-status");
  status.textContent = "drawing a pair…";
  try {
    const prompt = $("#arena-prompt").value;
    arena.pair = await api("/v1/arena/pair", {rater: $("#rater").value || "anonymous", prompt: prompt || undefined});
    $("#arena-a").replaceChildren(show(arena.pair.a.rendering));
    $("#arena-b").replaceChildren(show(arena.pair.b.rendering));
    arena.shown = performance.now();
    status.textContent = "";
  } catch (e) { status.textContent = e.message; arena.pair = null; }
}

async function vote(choice) {
  if (!arena.pair || arena.busy) return;
  arena.busy = true;
  const body = {pair_id: arena.pair.pair_id, choice, rater: $("#rater").value || "anonymous",
                decision_ms: Math.round(performance.now() - arena.shown), idempotency_key: uuid()};
  const status = $("#arena-status");
  for (let attempt = 0; attempt < 3; attempt++) {  // a retry reuses the key, so it never counts twice
    try {
      const res = await api("/v1/arena/vote", body);
      status.textContent = `vote stored: A was ${res.revealed.a}, B was ${res.revealed.b}`;
      status.dataset.votes = String((+status.dataset.votes || 0) + 1);
      break;
    } catch (e) {
      status.textContent = "vote failed (" + e.message + ")" + (attempt < 2 ? ", retrying" : "");
      await new Promise(r => setTimeout(r, 500 * (attempt + 1)));
    }
  }
  arena.busy = false;
  setTimeout(nextPair, 600);
}

// -- leaderboard and drift -----------------------------------------------------------------------------------
async function loadBoard() {
  const res = await api("/v1/leaderboard");
  const tbody = $("#board tbody");
  tbody.replaceChildren(...res.models.map(r => el("tr", {},
    el("td", {text: String(r.rank)}), el("td", {text: r.model}), el("td", {text: r.rating.toFixed(0)}),
    el("td", {text: `${r.lower.toFixed(0)} – ${r.upper.toFixed(0)}`}), el("td", {text: String(r.votes)}),
    el("td", {text: `${r.wins} / ${r.losses} / ${r.ties}`}))));
  const pb = res.position_bias;
  const ex = res.raters.excluded;
  $("#board-notes").textContent = `${res.votes} votes, ${res.gold_votes} gold votes, ${res.rounds} bootstrap rounds. ` +
    (pb ? `Left side bias ${pb.elo.toFixed(0)} Elo (${pb.lower.toFixed(0)} – ${pb.upper.toFixed(0)}). ` : "") +
    (ex.length ? `Excluded raters (gold accuracy below ${res.raters.min_gold_accuracy}): ` +
      ex.map(r => `${r.rater} ${(100 * r.accuracy).toFixed(0)} %`).join(", ") : "No rater excluded.");
}

function plot(checks, names) {
  const W = 520, H = 160, pad = 28, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("class", "plot");
  const line = (x1, y1, x2, y2, color, dash) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({x1, y1, x2, y2, stroke: color, "stroke-dasharray": dash || ""}).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const ratios = checks.map(c => names.map(n => c.statistics[n] / Math.max(c.thresholds[n], 1e-12)));
  const top = Math.max(2, ...ratios.flat().filter(Number.isFinite));
  const x = i => pad + (checks.length < 2 ? 0 : i * (W - 2 * pad) / (checks.length - 1));
  const y = v => H - pad - Math.min(v, top) / top * (H - 2 * pad);
  line(pad, y(1), W - pad, y(1), "#b91c1c", "4 3");
  line(pad, H - pad, W - pad, H - pad, "#999");
  const colors = ["#2563eb", "#16a34a", "#9333ea", "#ea580c"];
  names.forEach((n, k) => {
    const p = document.createElementNS(ns, "polyline");
    p.setAttribute("points", ratios.map((r, i) => `${x(i)},${y(r[k])}`).join(" "));
    p.setAttribute("fill", "none"); p.setAttribute("stroke", colors[k % colors.length]); p.setAttribute("stroke-width", "2");
    svg.append(p);
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", pad + 4 + k * 110); t.setAttribute("y", 14); t.setAttribute("fill", colors[k % colors.length]);
    t.setAttribute("font-size", "12"); t.textContent = n; svg.append(t);
  });
  const t = document.createElementNS(ns, "text");
  t.setAttribute("x", W - pad - 90); t.setAttribute("y", y(1) - 4); t.setAttribute("font-size", "11");
  t.setAttribute("fill", "#b91c1c"); t.textContent = "threshold"; svg.append(t);
  return svg;
}

async function loadDrift() {
  const res = await api("/v1/drift");
  const root = $("#drift");
  root.replaceChildren(el("p", {class: "note", text: "Each window of served samples against the reference drawn " +
    "at start; a statistic over its threshold (the dashed line: 1 = threshold) is an alarm."}));
  for (const [name, d] of Object.entries(res.models)) {
    const box = el("div", {class: "card drift-card", "data-model": name}, el("h2", {text: name}));
    if (d.state !== "ready") {
      box.append(el("p", {class: "note", text: `monitor ${d.state}${d.error ? ": " + d.error : ""}`}));
    } else {
      const names = Object.keys(d.thresholds);
      const alarms = d.checks.filter(c => c.alarm).length;
      box.append(el("p", {class: alarms ? "alarm" : "note", text: `${d.checks.length} windows of ${d.window}, ` +
        `${alarms} alarm(s); filling ${d.filling}/${d.window}`}));
      if (d.checks.length) box.append(plot(d.checks, names));
    }
    root.append(box);
  }
}

// -- tabs ---------------------------------------------------------------------------------------------------
let driftTimer = null;
function openTab(name) {
  document.querySelectorAll(".tab").forEach(t => t.classList.toggle("active", t.dataset.tab === name));
  document.querySelectorAll(".panel").forEach(p => { p.hidden = p.id !== name; });
  clearInterval(driftTimer);
  if (name === "arena" && !arena.pair) nextPair();
  if (name === "leaderboard") loadBoard().catch(e => { $("#board-notes").textContent = e.message; });
  if (name === "drift") { loadDrift().catch(() => {}); driftTimer = setInterval(() => loadDrift().catch(() => {}), 5000); }
}

async function main() {
  document.querySelectorAll(".tab").forEach(t => t.addEventListener("click", () => openTab(t.dataset.tab)));
  document.querySelectorAll(".votes button").forEach(b => b.addEventListener("click", () => vote(b.dataset.choice)));
  document.addEventListener("keydown", (e) => {
    if ($("#arena").hidden || e.target.tagName === "INPUT") return;
    const choice = {"1": "a", "2": "b", "3": "tie", "4": "both_bad"}[e.key];
    if (choice) vote(choice);
  });
  const rater = $("#rater");
  rater.value = localStorage.getItem("genlab-rater") || "rater-" + uuid().slice(0, 8);
  rater.addEventListener("change", () => localStorage.setItem("genlab-rater", rater.value));
  localStorage.setItem("genlab-rater", rater.value);
  try {
    const res = await api("/v1/models");
    const cards = el("div", {class: "cards"});
    for (const m of res.data) cards.append(buildCard(m));
    $("#gallery").replaceChildren(cards);
    setStatus(`${res.data.length} model(s) · at most ${res.limits.max_n} samples per request`);
    document.body.dataset.ready = "1";
  } catch (e) { fail($("#gallery"), e); }
}

main();
