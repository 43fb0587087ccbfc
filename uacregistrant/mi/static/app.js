// The status page: polls status/records.json for the page in view, drives rows through /mi.
"use strict";

const STATES = [
  "NOT_REGISTERED_STATE", "REGISTERING_STATE", "AUTHENTICATING_STATE", "REGISTERED_STATE",
  "REGISTER_TIMEOUT_STATE", "INTERNAL_ERROR_STATE", "WRONG_CREDENTIALS_STATE",
  "REGISTRAR_ERROR_STATE", "UNREGISTERING_STATE", "AUTHENTICATING_UNREGISTER_STATE",
];
const POLL_MS = 2000;
const TOKEN_KEY = "uac-registrant.mi_token";

const view = { offset: 0, limit: 50, q: "", state: "", sort: "aor", desc: false };
let latest = null;        // the last records.json body
let fetchedAt = 0;        // performance.now() when it arrived, to count down from
let generation = 0;       // a newer query makes older answers stale
let pollTimer = null;
let rpcId = 0;
let tokenPrompt = null;   // one prompt at a time, shared by every request waiting on it

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

// -- talking to the server --------------------------------------------------------

function askToken() {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      const dialog = $("#token-dialog");
      dialog.addEventListener("close", () => {
        sessionStorage.setItem(TOKEN_KEY, $("#token-input").value);
        $("#token-input").value = "";
        tokenPrompt = null;
        resolve();
      }, { once: true });
      dialog.showModal();
    });
  }
  return tokenPrompt;
}

async function call(url, options = {}) {
  for (;;) {
    const headers = { ...(options.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(url, { ...options, headers, cache: "no-store" });
    if (response.status !== 401) return response;
    await askToken();
  }
}

async function mi(method, params) {
  const response = await call("mi", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  const reply = await response.json();
  if (reply.error) {
    const { message, data } = reply.error;
    throw new Error(data ? `${message}: ${data}` : message);
  }
  return reply.result;
}

function queryString() {
  const params = new URLSearchParams({
    offset: view.offset, limit: view.limit, sort: view.sort, desc: view.desc ? "1" : "0",
  });
  if (view.q) params.set("q", view.q);
  if (view.state) params.set("state", view.state);
  return params.toString();
}

async function refresh() {
  clearTimeout(pollTimer);
  const mine = ++generation;
  try {
    const response = await call("status/records.json?" + queryString());
    const body = await response.json();
    if (mine !== generation) return;
    if (!response.ok) throw new Error(body.error || response.statusText);
    latest = body;
    fetchedAt = performance.now();
    // Filters can shrink the list under the current page: go back to the last one.
    if (body.matched > 0 && body.offset >= body.matched) {
      view.offset = Math.floor((body.matched - 1) / view.limit) * view.limit;
      return refresh();
    }
    render(body);
    showError("");
  } catch (error) {
    if (mine !== generation) return;
    showError("Cannot update: " + error.message);
  }
  if (mine === generation) pollTimer = setTimeout(refresh, POLL_MS);
}

function showError(text) {
  const node = $("#error");
  node.textContent = text;
  node.hidden = !text;
}

// -- rendering ------------------------------------------------------------------------

function render(body) {
  $("#total").textContent = body.total.toLocaleString();
  renderCounts(body.counts);
  renderShtags(body.shtags);
  drawActivity(body.activity);
  renderRows(body.records);
  const first = body.matched ? body.offset + 1 : 0;
  const last = Math.min(body.offset + body.limit, body.matched);
  $("#page-info").textContent = `${first}–${last} of ${body.matched.toLocaleString()}`;
  $("#prev").disabled = body.offset === 0;
  $("#next").disabled = body.offset + body.limit >= body.matched;
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === view.sort);
    th.classList.toggle("desc", th.dataset.sort === view.sort && view.desc);
  }
}

function renderCounts(counts) {
  const list = $("#counts");
  list.replaceChildren(...STATES.map((name) => {
    const item = el("li", { class: `s-${name}`, "data-state": name, title: "Show only this state" },
      name.replace(/_STATE$/, "").replaceAll("_", " ").toLowerCase(),
      el("span", { class: "n" }, String(counts[name] ?? 0)));
    item.classList.toggle("zero", !counts[name]);
    item.classList.toggle("active", view.state === name);
    return item;
  }));
}

function renderShtags(shtags) {
  const list = $("#shtags");
  const tags = Object.keys(shtags).sort();
  list.hidden = tags.length === 0;
  list.replaceChildren(...tags.map((tag) =>
    el("li", { "data-shtag": tag }, tag, el("span", { class: "n" }, " " + shtags[tag]))));
}

function drawActivity(activity) {
  const canvas = $("#activity");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 360;
  const height = canvas.clientHeight || 80;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const series = activity.series;
  $("#activity-step").textContent = activity.step;
  const top = Math.max(1, ...series.map((slot) => slot.sent), ...series.map((slot) => slot.failures));
  const slotWidth = width / series.length;
  const style = getComputedStyle(document.documentElement);
  series.forEach((slot, i) => {
    const x = i * slotWidth;
    const sent = (slot.sent / top) * (height - 12);
    ctx.fillStyle = style.getPropertyValue("--busy");
    ctx.fillRect(x, height - sent, Math.max(1, slotWidth - 1), sent);
    const failed = (slot.failures / top) * (height - 12);
    ctx.fillStyle = style.getPropertyValue("--bad");
    ctx.fillRect(x + slotWidth / 4, height - failed, Math.max(1, slotWidth / 2), failed);
  });
  ctx.fillStyle = style.getPropertyValue("--idle");
  ctx.font = "10px sans-serif";
  ctx.fillText(String(top), 2, 10);
}

function describeWait(seconds) {
  if (seconds <= 0) return "due";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`;
}

function serverNow() {
  return latest.now + (performance.now() - fetchedAt) / 1000;
}

function countdownText(record) {
  if (record.waits_for_operator) return "waits for operator";
  if (record.next_attempt_epoch === null) return record.enabled === "yes" ? "due" : "–";
  return describeWait(record.next_attempt_epoch - serverNow());
}

// reg_list's ctime text is in the server's zone; the epoch is shown in the browser's.
function nextAttemptText(record) {
  if (record.waits_for_operator) return "never";
  if (record.next_attempt_epoch === null) return "–";
  return new Date(record.next_attempt_epoch * 1000).toLocaleString();
}

function triple(record) {
  return { aor: record.AOR, contact: record.binding, registrar: record.registrar };
}

function renderRows(records) {
  const rows = records.map((record) => {
    const reply = record.last_code === null ? (record.last_reason || "–")
      : `${record.last_code} ${record.last_reason || ""}`;
    const row = el("tr", {
      class: record.enabled === "yes" ? "" : "disabled",
      "data-aor": record.AOR,
      "data-key": [record.AOR, record.binding, record.registrar].join(" "),
    },
      el("td", { class: "aor" }, record.AOR),
      el("td", { class: "registrar" }, record.registrar),
      el("td", { class: "binding" }, record.binding),
      el("td", { class: `state s-${record.state}` }, record.state,
        record.enabled === "yes" ? "" : el("span", { class: "note" }, "disabled")),
      el("td", { class: "reply" }, reply),
      el("td", { class: "expires" }, String(record.expires)),
      el("td", { class: "countdown" }, countdownText(record)),
      el("td", { class: "failures" }, String(record.failures)),
      el("td", { class: "next-attempt" }, nextAttemptText(record)),
      el("td", { class: "shtag" }, record.shtag === undefined ? "" : `${record.shtag}/${record.cluster_id}`),
      actions(record));
    row.record = record;
    return row;
  });
  $("#records tbody").replaceChildren(...rows);
}

function actions(record) {
  const cell = el("td", { class: "actions" });
  const button = (label, name, run) => {
    const node = el("button", { type: "button", class: `action-${name}` }, label);
    node.addEventListener("click", () => act(cell, run));
    cell.append(node, " ");
  };
  if (record.enabled === "yes") {
    button("Disable", "disable", async () => {
      if (!(await confirmDisable(record))) return null;
      return mi("reg_disable", triple(record));
    });
  } else {
    button("Enable", "enable", () => mi("reg_enable", triple(record)));
  }
  button("Register now", "force", () => mi("reg_force_register", triple(record)));
  button("Reload", "reload", () => mi("reg_reload", triple(record)));
  return cell;
}

async function act(cell, run) {
  for (const node of cell.querySelectorAll("button")) node.disabled = true;
  let note = null;
  try {
    const result = await run();
    if (result !== null) note = el("span", { class: "note result" }, String(result));
  } catch (error) {
    note = el("span", { class: "note error" }, error.message);
  }
  for (const node of cell.querySelectorAll("button")) node.disabled = false;
  if (note === null) return;
  await refresh();
  // The row is new after the refresh: find it again to show the outcome.
  const key = cell.parentElement.dataset.key;
  const row = [...document.querySelectorAll("#records tbody tr")].find((tr) => tr.dataset.key === key);
  (row ? row.querySelector(".actions") : cell).append(note);
}

function confirmDisable(record) {
  return new Promise((resolve) => {
    const dialog = $("#confirm-dialog");
    $("#confirm-text").textContent =
      `Disable ${record.AOR} at ${record.registrar}? Its binding ${record.binding} is removed now.`;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

function tick() {
  if (!latest) return;
  for (const row of document.querySelectorAll("#records tbody tr")) {
    row.querySelector(".countdown").textContent = countdownText(row.record);
  }
}

// -- controls ----------------------------------------------------------------------------

function setView(changes) {
  Object.assign(view, changes);
  refresh();
}

function start() {
  const select = $("#state-filter");
  for (const name of STATES) select.append(el("option", { value: name }, name));
  let typing = null;
  $("#q").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => setView({ q: event.target.value.trim(), offset: 0 }), 250);
  });
  $("#filters").addEventListener("submit", (event) => event.preventDefault());
  select.addEventListener("change", () => setView({ state: select.value, offset: 0 }));
  $("#counts").addEventListener("click", (event) => {
    const item = event.target.closest("li[data-state]");
    if (!item) return;
    const state = view.state === item.dataset.state ? "" : item.dataset.state;
    select.value = state;
    setView({ state, offset: 0 });
  });
  $("#limit").addEventListener("change", (event) =>
    setView({ limit: Number(event.target.value), offset: 0 }));
  $("#prev").addEventListener("click", () => setView({ offset: Math.max(0, view.offset - view.limit) }));
  $("#next").addEventListener("click", () => setView({ offset: view.offset + view.limit }));
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => setView({
      sort: th.dataset.sort,
      desc: view.sort === th.dataset.sort ? !view.desc : false,
      offset: 0,
    }));
  }
  setInterval(tick, 1000);
  refresh();
}

start();
