// The page: it asks the backend for everything it shows (methods, their settings, the toon world) and
// sends every edit to /api/edit; no method logic here.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, image: null, record: null, changes: {}, jobs: [], maskDirty: false };

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function say(id, text) { $(id).textContent = text || ""; }

// --- the input image and its mask ------------------------------------------------------------------

function setInput(dataUrl, record, message) {
  state.image = dataUrl;
  state.record = record || null;
  state.changes = {};
  $("layout").value = "";
  showChanges();
  $("input-image").src = dataUrl;
  clearCanvas($("mask-canvas"));
  state.maskDirty = false;
  $("source").placeholder = record ? "derived: " + record.description : "the input's description (needed)";
  $("toon-edit").disabled = !record;
  if (record) setPoseSliders(record);
  say("input-message", message);
}

function clearCanvas(canvas) {
  const size = state.info.image_size;
  canvas.width = size; canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "black"; ctx.fillRect(0, 0, size, size);
}

function paintable(canvas, enabled, onPaint) {
  let down = false;
  const draw = (event) => {
    if (!down || !enabled()) return;
    const rect = canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) * canvas.width / rect.width;
    const y = (event.clientY - rect.top) * canvas.height / rect.height;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "white";
    ctx.beginPath(); ctx.arc(x, y, Number($("brush").value) / 2, 0, 2 * Math.PI); ctx.fill();
    onPaint();
  };
  canvas.addEventListener("pointerdown", (e) => { down = true; draw(e); });
  canvas.addEventListener("pointermove", draw);
  window.addEventListener("pointerup", () => { down = false; });
}

async function loadToon(body) {
  const toon = await api("/api/toon", body);
  setInput(toon.image, { ...toon.record, description: toon.description }, "toon: " + toon.description);
}

function readUpload(file) {
  const reader = new FileReader();
  reader.onload = () => {
    const img = new Image();
    img.onload = () => {
      const size = state.info.image_size;
      const note = img.width === size && img.height === size ? "" :
        `this image is ${img.width}x${img.height}; the model edits ${size}x${size} pictures, so the edit will be refused`;
      setInput(reader.result, null, note || "uploaded " + file.name);
    };
    img.src = reader.result;
  };
  reader.readAsDataURL(file);
}

// --- the edit form, generated from each method's config -----------------------------------------------

function fillMethods() {
  const select = $("method");
  for (const m of state.info.methods) select.add(new Option(m.name, m.name));
  select.value = state.info.methods.some((m) => m.name === "ito") ? "ito" : state.info.methods[0].name;
  select.addEventListener("change", showSettings);
  showSettings();
}

function currentMethod() { return state.info.methods.find((m) => m.name === $("method").value); }

function showSettings() {
  const method = currentMethod();
  say("method-about", method.about + (method.segmentation
    ? " Edits by segmentation map: on a toon, give the changes of face parts (e.g. mouth=open); a painted mask is its ROI."
    : (method.mask ? " Takes a painted mask." : "") + (method.layout ? " Takes a pose or scribble." : " Text only.")));
  const box = $("settings");
  box.innerHTML = "";
  for (const s of method.settings) {
    const label = document.createElement("label");
    label.title = s.help || "";
    label.textContent = s.name + " ";
    let input;
    if (s.choices) {
      input = document.createElement("select");
      for (const c of s.choices) input.add(new Option(c, c));
      input.value = s.default;
    } else if (s.type === "bool") {
      input = document.createElement("input"); input.type = "checkbox"; input.checked = s.default;
    } else {
      input = document.createElement("input");
      input.type = s.type === "str" ? "text" : "number";
      if (s.type === "float") input.step = "any";
      if (s.lo !== null && s.lo !== undefined) input.min = s.lo;
      if (s.hi !== null && s.hi !== undefined) input.max = s.hi;
      input.value = s.default === null ? "" : s.default;
      input.placeholder = s.optional ? "none" : "";
    }
    input.dataset.setting = s.name;
    input.dataset.type = s.type;
    label.appendChild(input);
    const help = document.createElement("div");
    help.className = "about"; help.textContent = s.help || "";
    label.appendChild(help);
    box.appendChild(label);
  }
}

function settingsOf() {
  const out = {};
  const method = currentMethod();
  for (const input of $("settings").querySelectorAll("[data-setting]")) {
    const spec = method.settings.find((s) => s.name === input.dataset.setting);
    let value = input.type === "checkbox" ? input.checked : input.value;
    if (spec.type === "int" || spec.type === "float") value = value === "" ? null : Number(value);
    if (value !== spec.default) out[spec.name] = value;
  }
  return out;
}

function fillToonControls() {
  const attrs = state.info.attributes;
  const attrSelect = $("change-attribute");
  for (const name of Object.keys(attrs)) attrSelect.add(new Option(name, name));
  const fillValues = () => {
    const values = $("change-value"); values.innerHTML = "";
    for (const v of attrs[attrSelect.value]) values.add(new Option(v, v));
  };
  attrSelect.addEventListener("change", fillValues);
  fillValues();
  const maker = $("toon-attributes");
  for (const [name, values] of Object.entries(attrs)) {
    const label = document.createElement("label");
    label.textContent = name + " ";
    const select = document.createElement("select");
    select.dataset.attribute = name;
    select.add(new Option("(as drawn)", ""));
    for (const v of values) select.add(new Option(v, v));
    label.appendChild(select); maker.appendChild(label);
  }
  for (const [key, id] of [["head_x", "head-x"], ["head_y", "head-y"], ["head_scale", "head-scale"]]) {
    const [lo, hi] = state.info.pose[key];
    $(id).min = lo; $(id).max = hi;
  }
  $("toon-edit").disabled = true;
}

function setPoseSliders(record) {
  $("head-x").value = record.head_x; $("head-y").value = record.head_y; $("head-scale").value = record.head_scale;
}

function showChanges() {
  const text = Object.entries(state.changes).map(([k, v]) => `${k}=${v}`).join(", ");
  say("changes", text ? "changes: " + text : "");
}

// --- running edits ------------------------------------------------------------------------------------

function canvasData(canvas) { return canvas.toDataURL("image/png"); }

function editBody(method, settings) {
  const body = { method, image: state.image, settings, seed: Number($("seed").value) || 0,
                 changes: state.changes, layout_from_changes: $("layout").value || null };
  if ($("target").value.trim()) body.target = $("target").value.trim();
  if ($("source").value.trim()) body.source = $("source").value.trim();
  if ($("paint-mask").checked && state.maskDirty) body.mask = canvasData($("mask-canvas"));
  if ($("use-scribble").checked) body.controls = { scribble: canvasData($("scribble-canvas")) };
  return body;
}

function busy(running) {
  $("run").disabled = running; $("compare").disabled = running; $("cancel").disabled = !running;
  if (running) $("progress").removeAttribute("value"); else { $("progress").max = 1; $("progress").value = 1; }
}

async function submit(body) {
  const started = await api("/api/edit", body);
  if (started.notes.length) say("status", "note: " + started.notes.join("; "));
  state.jobs.push(started.job);
  return started.job;
}

async function runEdit() {
  if (!state.image) { say("status", "choose an image first"); return; }
  say("status", "");
  try {
    const method = $("method").value;
    await submit(editBody(method, settingsOf()));
    busy(true);
    await follow(state.jobs[state.jobs.length - 1], method);
  } catch (error) {
    say("status", error.message);
  }
  busy(false);
  refreshHistory();
}

async function compareAll() {
  if (!state.image) { say("status", "choose an image first"); return; }
  const row = document.createElement("div");
  row.className = "compare-row";
  $("results").prepend(row);
  busy(true);
  const followed = [];
  for (const m of state.info.methods) {
    try {
      followed.push(follow(await submit(editBody(m.name, {})), m.name, row));
    } catch (error) {
      const note = document.createElement("div");
      note.className = "card skipped"; note.dataset.method = m.name;
      note.textContent = `${m.name}: ${error.message}`;
      row.appendChild(note);
    }
  }
  await Promise.all(followed);
  busy(false);
  refreshHistory();
}

async function follow(jobId, method, into) {
  for (;;) {
    const job = await api(`/api/jobs/${jobId}`);
    if (job.state === "queued" || job.state === "running") {
      const where = job.phase ? `${job.phase} ${job.phase_calls}/${job.phase_steps}` : job.state;
      say("status", `${method}: ${job.state}, ${where} (${job.evaluations} U-Net evaluations)`);
      if (job.phase_steps) { $("progress").max = job.phase_steps; $("progress").value = job.phase_calls; }
      await new Promise((resolve) => setTimeout(resolve, 300));
      continue;
    }
    if (job.state === "done") {
      say("status", `${method}: done, ${job.result.provenance.unet_evaluations} U-Net evaluations, ` +
                    `${job.result.provenance.seconds} s`);
      addResult(job.job, method, state.image, job.result, into);
    } else {
      say("status", `${method}: ${job.state}. ${job.message}`);
    }
    return job;
  }
}

function addResult(jobId, method, input, result, into) {
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.method = method;
  const title = document.createElement("h3");
  title.textContent = `${method} · ${result.provenance.seconds} s · ${result.provenance.unet_evaluations} U-Net evals`;
  card.appendChild(title);
  const compare = document.createElement("div");
  compare.className = "compare";
  const before = document.createElement("img"); before.src = input; before.alt = "input";
  const after = document.createElement("img"); after.src = result.image; after.className = "after result";
  after.alt = "result";
  compare.append(before, after);
  const slider = document.createElement("input");
  slider.type = "range"; slider.min = 0; slider.max = 100; slider.value = 50; slider.title = "before / after";
  slider.addEventListener("input", () => { after.style.clipPath = `inset(0 0 0 ${slider.value}%)`; });
  card.append(compare, slider);
  const thumbs = document.createElement("div");
  thumbs.className = "thumbs";
  for (const [name, url] of Object.entries(result.pictures)) {
    const figure = document.createElement("figure");
    const img = document.createElement("img"); img.src = url; img.alt = name;
    const caption = document.createElement("figcaption"); caption.textContent = name;
    figure.append(img, caption); thumbs.appendChild(figure);
  }
  card.appendChild(thumbs);
  const link = document.createElement("a");
  link.href = `/api/jobs/${jobId}/result.png`; link.textContent = "download PNG (with provenance)";
  link.className = "download";
  card.appendChild(link);
  const details = document.createElement("details");
  details.className = "provenance";
  details.innerHTML = "<summary>provenance</summary>";
  const pre = document.createElement("pre"); pre.textContent = JSON.stringify(result.provenance, null, 1);
  details.appendChild(pre); card.appendChild(details);
  (into || $("results")).prepend(card);
}

// --- history ------------------------------------------------------------------------------------------

async function refreshHistory() {
  const past = await api("/api/history");
  const box = $("history");
  box.innerHTML = "";
  for (const e of past) {
    const item = document.createElement("button");
    item.className = "past"; item.dataset.id = e.id;
    const when = new Date(e.created * 1000).toLocaleString();
    item.textContent = `${when} · ${e.method} · ${e.state}` + (e.target ? ` · ${e.target}` : "") +
                       (e.seconds ? ` · ${e.seconds} s` : "");
    item.addEventListener("click", () => reopen(e.id));
    box.appendChild(item);
  }
}

async function reopen(id) {
  const past = await api(`/api/history/${id}`);
  setInput(past.image, past.record, `reopened edit ${id} (${past.method}, ${past.state})`);
  const request = past.request;
  $("method").value = past.method; showSettings();
  for (const input of $("settings").querySelectorAll("[data-setting]")) {
    const value = request.settings[input.dataset.setting];
    if (value === undefined) continue;
    if (input.type === "checkbox") input.checked = value; else input.value = value;
  }
  $("seed").value = request.seed; $("target").value = request.target || ""; $("source").value = request.source || "";
  state.changes = { ...request.changes }; $("layout").value = request.layout_from_changes || ""; showChanges();
  if (past.result) addResult(id, past.method, past.image, past.result);
}

// --- wiring -------------------------------------------------------------------------------------------

async function start() {
  state.info = await api("/api/info");
  say("model", `model: ${state.info.model}, ${state.info.image_size}x${state.info.image_size}`);
  fillMethods();
  fillToonControls();
  clearCanvas($("mask-canvas"));
  clearCanvas($("scribble-canvas"));
  paintable($("mask-canvas"), () => $("paint-mask").checked, () => { state.maskDirty = true; });
  paintable($("scribble-canvas"), () => true, () => { $("use-scribble").checked = true; });
  $("upload").addEventListener("change", (e) => e.target.files[0] && readUpload(e.target.files[0]));
  $("random-toon").addEventListener("click", () => loadToon({ seed: Number($("toon-seed").value) || 0 })
    .catch((e) => say("input-message", e.message)));
  $("make-toon").addEventListener("click", () => {
    const changes = {};
    for (const s of $("toon-attributes").querySelectorAll("select")) if (s.value) changes[s.dataset.attribute] = s.value;
    loadToon({ seed: Number($("toon-seed").value) || 0, changes }).catch((e) => say("input-message", e.message));
  });
  $("generate").addEventListener("click", async () => {
    say("input-message", "generating ...");
    try {
      const out = await api("/api/generate", { prompt: $("prompt").value, seed: Number($("toon-seed").value) || 0 });
      setInput(out.image, null, "generated: " + $("prompt").value);
      $("source").value = $("prompt").value;
    } catch (e) { say("input-message", e.message); }
  });
  $("clear-mask").addEventListener("click", () => { clearCanvas($("mask-canvas")); state.maskDirty = false; });
  $("outline").addEventListener("click", async () => {
    if (!state.image) { say("status", "choose an image first"); return; }
    try {
      const out = await api("/api/scribble", { image: state.image });
      const img = new Image();
      img.onload = () => $("scribble-canvas").getContext("2d").drawImage(img, 0, 0);
      img.src = out.scribble;
    } catch (e) { say("status", e.message); }
  });
  $("clear-scribble").addEventListener("click", () => { clearCanvas($("scribble-canvas")); $("use-scribble").checked = false; });
  $("add-change").addEventListener("click", () => {
    state.changes[$("change-attribute").value] = $("change-value").value; showChanges();
  });
  $("clear-changes").addEventListener("click", () => { state.changes = {}; $("layout").value = ""; showChanges(); });
  $("pose-edit").addEventListener("click", () => {
    state.changes = { ...state.changes, head_x: $("head-x").value, head_y: $("head-y").value,
                      head_scale: $("head-scale").value };
    $("layout").value = "pose";
    if (!currentMethod().layout) $("method").value = "ito";
    showSettings(); showChanges();
  });
  $("run").addEventListener("click", runEdit);
  $("compare").addEventListener("click", compareAll);
  $("cancel").addEventListener("click", () => state.jobs.forEach((id) => api(`/api/jobs/${id}/cancel`, {})));
  refreshHistory();
}

start().catch((e) => say("status", "could not start: " + e.message));
