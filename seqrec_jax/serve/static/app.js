// The explorer page: plain DOM code, no libraries, talks only to this server's /api routes.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  info: null,
  person: null,        // {user: "ID"} or {items: [ids]}
  strengths: {},       // edit name ("Comedy" or "#17") -> strength
  picked: [],          // latent ids with their own slider
  typed: [],           // typed history: [{item, title}]
  latents: null,       // rows of /api/latents
  sort: {key: "latent", descending: false},
  generation: 0,       // answers of older requests are dropped
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return String(v);
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(route, params = []) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(`/api/${route}${query ? "?" + query : ""}`);
  let body;
  try { body = await response.json(); } catch (e) { body = {error: `bad answer (${response.status})`}; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function personParams() {
  if (!state.person) return [];
  if (state.person.user !== undefined) return [["user", state.person.user]];
  return [["items", state.person.items.join(",")]];
}

function editParams() {
  return Object.entries(state.strengths).filter(([, v]) => v !== 0)
    .map(([name, v]) => ["edit", `${name}:${v >= 0 ? "+" : ""}${v}`]);
}

// ------------------------------------------------------------------ steering panel

function itemLine(entry, {explain = true} = {}) {
  const li = el("li", entry.new ? {class: "new"} : {}, entry.title,
                el("span", {class: "attrs"}, ` ${entry.attributes.join(", ")}`));
  li.dataset.item = entry.item;
  if (entry.new) li.append(el("span", {class: "badge"}, "new"));
  if (explain && state.person) {
    li.append(el("button", {class: "why", title: "latents behind this item's score",
                            onclick: () => explainItem(entry)}, "why?"));
  }
  return li;
}

function renderList(target, entries, options) {
  target.replaceChildren(...entries.map((e) => itemLine(e, options)));
}

function knobNote(c) {
  // What the knob did on the test users (steer stage): share before -> after, selectivity.
  const m = c.measured;
  const parts = [];
  if (m && m.strength !== null && m.strength !== undefined) {
    const sel = m.selectivity === null || m.selectivity === undefined ? "" :
      `, ${m.selectivity >= 1 ? "selective" : "moves others more"} (${m.selectivity.toFixed(1)})`;
    parts.push(`test users at +${m.strength}: ${m.baseline_share.toFixed(2)} \u2192 ` +
               `${m.share.toFixed(2)} of top 10${sel}`);
  } else if (m) {
    parts.push("no strength keeps NDCG@10 on the test users");
  }
  if (c.shares_control_with && c.shares_control_with.length)
    parts.push(`same control as ${c.shares_control_with.join(", ")}`);
  return parts.join("; ");
}

function slider(name, label, title, latent, note) {
  const limit = state.info.strength_limit;
  const value = state.strengths[name] || 0;
  const input = el("input", {type: "range", min: -limit, max: limit, step: 1, value,
                             "data-name": name, "aria-label": label});
  const out = el("output", {}, value);
  const text = el("label", {}, label);
  if (latent !== undefined) text.append(el("span", {class: "muted"}, ` #${latent}`));
  const row = el("div", {class: "slider" + (value ? " active" : ""), title}, text, input, out);
  if (note) row.append(el("small", {class: "muted knob"}, note));
  input.addEventListener("input", () => {
    const v = Number(input.value);
    out.textContent = v;
    row.classList.toggle("active", v !== 0);
    if (v === 0) delete state.strengths[name]; else state.strengths[name] = v;
    scheduleUpdate();
  });
  return row;
}

function renderSliders() {
  const info = state.info;
  $("#sliders").replaceChildren(...info.controls.map((c) =>
    slider(c.attribute, c.attribute,
           `latent ${c.latent}${c.label ? " (labelled " + c.label + ")" : ""}`, c.latent,
           knobNote(c))));
  const picked = state.picked.map((j) => {
    const row = state.latents && state.latents[j];
    return slider(`#${j}`, `#${j} ${row && row.label ? row.label : ""}`, `latent ${j}`);
  });
  if (picked.length) $("#picked-sliders").replaceChildren(...picked);
  $("#presets").replaceChildren(...info.presets.map((p) =>
    el("button", {title: p.edits.join(" "), onclick: () => applyPreset(p)}, p.name)));
}

function applyPreset(preset) {
  state.strengths = {};
  for (const text of preset.edits) {
    const cut = text.lastIndexOf(":");
    const name = text.slice(0, cut);
    if (name.startsWith("#") && !state.picked.includes(Number(name.slice(1)))) {
      state.picked.push(Number(name.slice(1)));
    }
    state.strengths[name] = Number(text.slice(cut + 1));
  }
  renderSliders();
  scheduleUpdate();
}

let pending = false;
function scheduleUpdate() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; update(); });
}

async function update() {
  const generation = ++state.generation;
  const edits = editParams();
  $("#edit-summary").textContent = edits.length ? `with ${edits.map((e) => e[1]).join(" ")}` : "";
  try {
    const [recs, effect] = await Promise.all([
      state.person ? api("recommend", [...personParams(), ...edits]) : null,
      api("effect", edits),
    ]);
    if (generation !== state.generation) return;
    showError("");
    if (recs) {
      renderList($("#after"), recs.after);
      renderList($("#before"), recs.before);
    }
    renderEffect(effect.baseline, effect.after);
  } catch (e) {
    if (generation === state.generation) showError(e.message);
  }
}

function renderEffect(base, after) {
  const edited = new Set(Object.keys(state.strengths));
  const row = (name, b, a, strong = false) => {
    const cls = a > b + 1e-9 ? "num up" : a < b - 1e-9 ? "num down" : "num";
    const label = strong ? el("b", {}, name) : name;
    return el("tr", {}, el("td", {}, label), el("td", {class: "num"}, fmt(b)),
              el("td", {class: cls}, fmt(a)));
  };
  const rows = ["ndcg@10", "hr@10", "coverage@10", "novelty@10", "ild@10"]
    .filter((k) => k in base).map((k) => row(k, base[k], after[k]));
  const shares = Object.keys(base["share@10"] || {});
  shares.sort((x, y) => (edited.has(y) - edited.has(x)));
  for (const name of shares) {
    rows.push(row(`share ${name}`, base["share@10"][name], after["share@10"][name], edited.has(name)));
  }
  $("#effect-table tbody").replaceChildren(...rows);
}

async function loadPerson(person) {
  $("#explanation").hidden = true;
  try {
    const history = await api("history", person.user !== undefined ? [["user", person.user]]
                                                                  : [["items", person.items.join(",")]]);
    state.person = person;  // only a person the server knows
    showError("");
    $("#history-length").textContent = `(${history.length} items, latest last)`;
    renderList($("#recent"), history.recent, {explain: false});
    await update();
  } catch (e) {
    showError(e.message);
  }
}

async function explainItem(entry) {
  try {
    const why = await api("explain", [...personParams(), ["item", entry.item]]);
    showError("");
    $("#why-title").textContent = why.title;
    $("#why-table tbody").replaceChildren(...why.latents.map((l) => el("tr", {},
      el("td", {}, el("a", {href: "#", onclick: (ev) => { ev.preventDefault(); showLatent(l.latent); }},
                      `#${l.latent}`)),
      el("td", {}, l.label || "unlabelled"), el("td", {class: "num"}, fmt(l.contribution)))));
    $("#why-note").textContent = `score ${fmt(why.score)} = contributions of the active latents ` +
      `(score change when each is ablated at the ${why.positions} position(s) of ${why.layer}) + ` +
      `remainder ${fmt(why.remainder)}. Without edits.`;
    $("#explanation").hidden = false;
  } catch (e) {
    showError(e.message);
  }
}

// ------------------------------------------------------------------ person search

async function suggestUsers() {
  const q = $("#user-input").value;
  try {
    const found = await api("users", [["q", q]]);
    $("#user-options").replaceChildren(...found.users.map((u) => el("option", {value: u})));
  } catch (e) { showError(e.message); }
}

async function suggestItems() {
  const q = $("#item-input").value;
  if (q.length < 2) { $("#item-options").replaceChildren(); return; }
  try {
    const found = await api("items", [["q", q]]);
    $("#item-options").replaceChildren(...found.items.map((it) => el("li", {
      onclick: () => { state.typed.push(it); renderTyped(); }}, it.title)));
  } catch (e) { showError(e.message); }
}

function renderTyped() {
  $("#typed-items").replaceChildren(...state.typed.map((it) => el("li", {}, it.title)));
}

// ------------------------------------------------------------------ latents panel

async function loadLatents() {
  if (state.latents) return;
  const body = await api("latents");
  state.latents = body.latents;
  renderLatentTable();
}

function renderLatentTable() {
  const q = $("#latent-search").value.trim().toLowerCase();
  const {key, descending} = state.sort;
  let rows = state.latents.filter((r) => !q || String(r.latent) === q ||
    (r.label || "").toLowerCase().includes(q) || (r.best_attribute || "").toLowerCase().includes(q));
  rows = rows.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return a.latent - b.latent;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * (descending ? -1 : 1);
  });
  $("#latent-table tbody").replaceChildren(...rows.map((r) => el("tr",
    {"data-latent": r.latent, onclick: () => showLatent(r.latent)},
    el("td", {class: "num"}, r.latent), el("td", {}, r.label || ""),
    el("td", {}, r.best_attribute || ""), el("td", {class: "num"}, fmt(r.auc)),
    el("td", {class: "num"}, fmt(r.precision)), el("td", {}, r.monosemantic ? "yes" : ""),
    el("td", {class: "num"}, fmt(r.fire_rate, 4)))));
}

function histogram(h) {
  const counts = h.counts || h.values || [];
  const edges = h.edges || h.bins || [];
  const max = Math.max(1, ...counts);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "histogram");
  svg.setAttribute("viewBox", `0 0 ${counts.length} 40`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("height", "80");
  svg.setAttribute("preserveAspectRatio", "none");
  counts.forEach((c, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = 40 * c / max;
    rect.setAttribute("x", i + 0.05); rect.setAttribute("width", 0.9);
    rect.setAttribute("y", 40 - height); rect.setAttribute("height", height);
    svg.append(rect);
  });
  const range = edges.length ? `${fmt(edges[0])} … ${fmt(edges[edges.length - 1])}` : "";
  return el("div", {}, svg, el("div", {class: "muted"}, range));
}

function entriesList(value) {
  // A logit effect saved as a list of {title|item, value|effect|logit} or as {name: value}.
  if (Array.isArray(value)) {
    return el("ol", {class: "items"}, ...value.slice(0, 15).map((v) => el("li", {},
      typeof v === "object" ? `${v.title || v.name || v.attribute || v.item} ` +
        `${fmt(v.effect ?? v.value ?? v.logit ?? v.score ?? "")}` : String(v))));
  }
  if (value && typeof value === "object") {
    return el("table", {}, ...Object.entries(value).slice(0, 20).map(([k, v]) => el("tr", {},
      el("td", {}, k), el("td", {class: "num"}, typeof v === "object" ? JSON.stringify(v) : fmt(v)))));
  }
  return el("span", {}, fmt(value));
}

async function showLatent(j) {
  showTab("latents");
  await loadLatents();
  try {
    const card = await api("latent", [["id", j]]);
    showError("");
    document.querySelectorAll("#latent-table tr.selected").forEach((r) => r.classList.remove("selected"));
    const row = document.querySelector(`#latent-table tr[data-latent="${j}"]`);
    if (row) row.classList.add("selected");
    const label = card.label ? `${card.label.attribute}${card.label.monosemantic ? " (monosemantic)" : ""}`
                             : "unlabelled";
    const parts = [el("h2", {}, `Latent ${j}: ${label}`),
      el("p", {}, `firing rate ${fmt(card.fire_rate, 4)}, typical activation ${fmt(card.typical)}` +
        (card.controls.length ? `; the control of ${card.controls.join(", ")}` : "")),
      el("button", {onclick: () => pickLatent(j)}, "Steer with this latent")];
    if (card.statistics.length) {
      const keys = Object.keys(card.statistics[0]).filter((k) => k !== "attribute");
      parts.push(el("h3", {}, "Statistics by attribute (best AUC first)"),
        el("table", {}, el("tr", {}, el("th", {}, "attribute"), ...keys.map((k) => el("th", {class: "num"}, k))),
           ...card.statistics.map((s) => el("tr", {}, el("td", {}, s.attribute),
             ...keys.map((k) => el("td", {class: "num"}, fmt(s[k])))))));
    }
    parts.push(el("h3", {}, "Top items"), card.top_items.length
      ? el("ol", {class: "items"}, ...card.top_items.map((it) => el("li", {}, it.title,
          el("span", {class: "attrs"}, ` ${it.attributes}`))))
      : el("p", {class: "muted"}, "not saved for this latent"));
    parts.push(el("h3", {}, "Top sequences"), card.top_sequences.length
      ? el("ol", {class: "items"}, ...card.top_sequences.map((s) => el("li", {},
          `user ${s.user}: ${s.items.join(" → ")}`)))
      : el("p", {class: "muted"}, "not saved for this latent"));
    const dash = card.dashboard || {};
    const hist = dash.histogram || dash.activation_histogram;
    parts.push(el("h3", {}, "Activation histogram"),
      hist ? histogram(hist) : el("p", {class: "muted"}, "not saved by this workdir's interpret stage"));
    const effect = dash.logit_effect || dash.logit_effects;
    parts.push(el("h3", {}, "Logit effect"),
      effect ? (typeof effect === "object" && !Array.isArray(effect) && ("items" in effect || "attributes" in effect)
        ? el("div", {}, ...Object.entries(effect).map(([k, v]) => el("div", {}, el("b", {}, k), entriesList(v))))
        : entriesList(effect))
        : el("p", {class: "muted"}, "not saved by this workdir's interpret stage"));
    const other = Object.keys(dash).filter((k) => !["histogram", "activation_histogram", "logit_effect",
                                                     "logit_effects"].includes(k));
    for (const k of other) parts.push(el("h3", {}, k), entriesList(dash[k]));
    $("#card").replaceChildren(...parts);
  } catch (e) {
    showError(e.message);
  }
}

function pickLatent(j) {
  if (!state.picked.includes(j)) state.picked.push(j);
  renderSliders();
  showTab("steer");
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("#steer").hidden = name !== "steer";
  $("#latents").hidden = name !== "latents";
  if (name === "latents") loadLatents().catch((e) => showError(e.message));
}

// ------------------------------------------------------------------ start

async function start() {
  try {
    state.info = await api("info");
  } catch (e) {
    showError(e.message);
    return;
  }
  const info = state.info;
  $("#about").textContent = `${info.dataset}: ${info.num_users} users, ${info.num_items} items; ` +
    `SAE on ${info.layer} (${info.dict_size} latents)`;
  $("#units").textContent = `(${info.mode}, typical activations, at ${info.positions} positions)`;
  $("#user-input").placeholder = `user id, e.g. ${info.example_users[0]}`;
  renderSliders();
  renderEffect(info.baseline, info.baseline);
  $("#user-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("#user-input").value.trim();
    if (id) loadPerson({user: id});
  });
  $("#user-input").addEventListener("input", suggestUsers);
  $("#item-input").addEventListener("input", suggestItems);
  $("#typed-use").addEventListener("click", () => {
    if (state.typed.length) loadPerson({items: state.typed.map((it) => it.item)});
  });
  $("#typed-clear").addEventListener("click", () => { state.typed = []; renderTyped(); });
  $("#reset").addEventListener("click", () => { state.strengths = {}; renderSliders(); scheduleUpdate(); });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  $("#latent-search").addEventListener("input", renderLatentTable);
  for (const th of document.querySelectorAll("#latent-table th")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = {key, descending: state.sort.key === key ? !state.sort.descending : key !== "latent" && key !== "label"};
      renderLatentTable();
    });
  }
  document.body.dataset.ready = "true";
}

start();
