// The status page: polls status/records.json for the page in view, drives rows through /mi.
"use strict";

const STATES = [
  "NOT_REGISTERED_STATE", "REGISTERING_STATE", "AUTHENTICATING_STATE", "REGISTERED_STATE",
  "REGISTER_TIMEOUT_STATE", "INTERNAL_ERROR_STATE", "WRONG_CREDENTIALS_STATE",
  "REGISTRAR_ERROR_STATE", "UNREGISTERING_STATE", "AUTHENTICATING_UNREGISTER_STATE",
];
const POLL_MS = 2000;
const TOKEN_KEY = "uac-registrant.mi_token";
const TRACE_SECONDS = 600;
// reg_list's availability keys and trace switch: shown in their own parts of the detail.
const FIGURE_KEYS = new Set(["enabled_s", "bound_s", "availability", "flaps", "last_outage", "trace"]);
// records.json's own keys, not reg_list's.
const PAGE_KEYS = new Set(["last_register_sent_epoch", "next_attempt_epoch", "waits_for_operator"]);

const view = { offset: 0, limit: 50, q: "", state: "", flapping: false, sort: "aor", desc: false };
// The record open in the detail dialog, and what it last showed (redrawn only when it changes).
const detail = { record: null, timer: null, generation: 0, shown: { fields: "", trace: "" } };
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
  if (view.flapping) params.set("flapping", "1");
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

function rowKey(record) {
  return [record.AOR, record.binding, record.registrar].join(" ");
}

function percentText(availability) {
  if (availability === null || availability === undefined) return "–";
  const percent = availability * 100;
  return percent === 100 ? "100 %" : `${percent.toFixed(2)} %`;
}

function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  return m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`;
}

function rowFor(key) {
  return [...document.querySelectorAll("#records tbody tr")].find((tr) => tr.dataset.key === key);
}

function renderRows(records) {
  // The rows are new each poll: keep the keyboard focus on the same control of the same row.
  const active = document.activeElement;
  const activeRow = active && active.closest ? active.closest("#records tbody tr") : null;
  const focus = activeRow ? { key: activeRow.dataset.key, className: active.className } : null;
  const rows = records.map((record) => {
    const reply = record.last_code === null ? (record.last_reason || "–")
      : `${record.last_code} ${record.last_reason || ""}`;
    const row = el("tr", {
      class: record.enabled === "yes" ? "" : "disabled",
      "data-aor": record.AOR,
      "data-key": rowKey(record),
    },
      el("td", { class: "aor" },
        el("button", { type: "button", class: "open-detail", title: "Show the details" }, record.AOR)),
      el("td", { class: "registrar" }, record.registrar),
      el("td", { class: "binding" }, record.binding),
      el("td", { class: `state s-${record.state}` }, record.state,
        record.enabled === "yes" ? "" : el("span", { class: "note" }, "disabled")),
      el("td", { class: "reply" }, reply),
      el("td", { class: "expires" }, String(record.expires)),
      el("td", { class: "countdown" }, countdownText(record)),
      el("td", { class: "failures" }, String(record.failures)),
      el("td", { class: "availability" }, percentText(record.availability)),
      el("td", { class: "flaps" }, record.flaps === undefined ? "–" : String(record.flaps)),
      el("td", { class: "next-attempt" }, nextAttemptText(record)),
      el("td", { class: "shtag" }, record.shtag === undefined ? "" : `${record.shtag}/${record.cluster_id}`),
      actions(record));
    row.record = record;
    return row;
  });
  $("#records tbody").replaceChildren(...rows);
  if (focus) {
    const row = rowFor(focus.key);
    const control = row && [...row.querySelectorAll("button")].find((b) => b.className === focus.className);
    if (control) control.focus();
  }
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
  const row = rowFor(cell.parentElement.dataset.key);
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

// -- the detail of one record -----------------------------------------------------------

function timeText(epoch, precise = false) {
  if (epoch === null || epoch === undefined) return "–";
  const when = new Date(epoch * 1000);
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (precise) options.fractionalSecondDigits = 3;
  const time = when.toLocaleTimeString(undefined, options);
  return when.toDateString() === new Date().toDateString() ? time : `${when.toLocaleDateString()} ${time}`;
}

function valueText(value) {
  if (value === null || value === undefined) return "–";
  if (Array.isArray(value)) return value.join("\n");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function definitions(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([term, value, className]) =>
    [el("dt", {}, term), el("dd", className ? { class: className } : {}, value)]));
}

function openDetail(record) {
  detail.record = record;
  detail.shown = { fields: "", trace: "" };
  $("#detail-exchanges").replaceChildren();
  $("#detail-no-exchanges").hidden = true;
  $("#detail-trace-state").textContent = "";
  detailError("");
  renderDetailRecord(record);
  const dialog = $("#detail");
  if (!dialog.open) dialog.showModal();
  $("#detail-close").focus();
  refreshDetail();
}

function closeDetail() {
  const record = detail.record;
  detail.record = null;
  detail.generation++;
  clearTimeout(detail.timer);
  if (!record) return;
  // Back to the row it was opened from (the rows are redrawn every poll).
  const row = rowFor(rowKey(record));
  if (row) row.querySelector(".open-detail").focus();
}

function detailError(text) {
  const node = $("#detail-error");
  node.textContent = text;
  node.hidden = !text;
}

async function refreshDetail() {
  clearTimeout(detail.timer);
  const record = detail.record;
  if (!record) return;
  const mine = ++detail.generation;
  const [listed, traced] = await Promise.allSettled(
    [mi("reg_list", triple(record)), mi("reg_trace", triple(record))]);
  if (mine !== detail.generation) return;
  const errors = [];
  if (listed.status === "fulfilled") renderDetailRecord(listed.value.Registrant);
  else errors.push(listed.reason.message);
  if (traced.status === "fulfilled") renderTrace(traced.value);
  else errors.push("exchanges: " + traced.reason.message);
  detailError(errors.join("; "));
  detail.timer = setTimeout(refreshDetail, POLL_MS);
}

function renderDetailRecord(entry) {
  const fields = Object.entries(entry).filter(([name]) => !FIGURE_KEYS.has(name) && !PAGE_KEYS.has(name));
  const snapshot = JSON.stringify(entry, (name, value) => (PAGE_KEYS.has(name) ? undefined : value));
  if (snapshot === detail.shown.fields) return;
  detail.shown.fields = snapshot;
  $("#detail-title").textContent = entry.AOR;
  const state = $("#detail-state");
  state.className = `state s-${entry.state}`;
  state.textContent = entry.enabled === "yes" ? entry.state : `${entry.state} (disabled)`;
  definitions($("#detail-fields"), fields.map(([name, value]) => [name, valueText(value)]));
  renderAvailability(entry);
  if (entry.trace !== undefined) showTraceState(entry.trace === "on", null);
}

function outageText(outage) {
  if (!outage) return "none";
  if (outage.end === null) {
    return `since ${timeText(outage.start)} (ongoing, ${durationText(nowSeconds() - outage.start)})`;
  }
  return `${timeText(outage.start)} – ${timeText(outage.end)} (${durationText(outage.end - outage.start)})`;
}

// The server's clock once records.json has told it, the browser's before.
function nowSeconds() {
  return latest ? serverNow() : Date.now() / 1000;
}

function renderAvailability(entry) {
  const meter = $("#detail-meter");
  const known = entry.availability !== null && entry.availability !== undefined;
  meter.hidden = !known;
  meter.value = known ? entry.availability : 0;
  if (entry.enabled_s === undefined) {
    definitions($("#detail-availability"), [["Availability", "not reported by this service"]]);
    return;
  }
  const pairs = [
    ["Availability", percentText(entry.availability), "figure"],
    ["Enabled for", durationText(entry.enabled_s)],
    ["Registered for", durationText(entry.bound_s)],
    ["Flaps", String(entry.flaps), "flaps"],
    ["Last outage", outageText(entry.last_outage), "outage"],
  ];
  if (entry.last_outage) pairs.push(["Cause", entry.last_outage.cause, "cause"]);
  definitions($("#detail-availability"), pairs);
}

function showTraceState(on, until) {
  $("#detail-trace-state").textContent = on
    ? (until ? `tracing until ${timeText(until)}` : "tracing")
    : "not traced";
  $("#detail-trace-state").classList.toggle("on", on);
  $("#trace-off").disabled = !on;
}

function sipText(text) {
  return text.replace(/\r\n/g, "\n").replace(/\n+$/, "");
}

function renderTrace(answer) {
  const on = answer.trace === "on";
  showTraceState(on, answer.trace_until);
  const snapshot = JSON.stringify(answer.exchanges);
  if (snapshot === detail.shown.trace) return;
  detail.shown.trace = snapshot;
  const exchanges = answer.exchanges || [];
  $("#detail-no-exchanges").hidden = exchanges.length > 0;
  $("#detail-exchanges").replaceChildren(...exchanges.map((exchange) => {
    const outcome = exchange.outcome || "reply";
    const summary = outcome === "reply" && exchange.reply
      ? sipText(exchange.reply).split("\n", 1)[0].replace(/^SIP\/2\.0\s+/, "")
      : exchange.reason ? `${outcome}: ${exchange.reason}` : outcome;
    const item = el("li", { class: `exchange outcome-${outcome.replace(/\W+/g, "-")}` },
      el("div", { class: "exchange-head" },
        el("time", {}, timeText(exchange.at, true)),
        el("span", { class: "where" }, `${exchange.transport} to ${exchange.destination}`),
        el("span", { class: "summary" }, summary)),
      el("pre", { class: "sip request" }, sipText(exchange.request || "")));
    if (exchange.reply) {
      item.append(el("pre", { class: "sip reply" }, sipText(exchange.reply)));
    } else {
      item.append(el("p", { class: "no-reply" },
        outcome === "timeout" ? `No reply: timeout${exchange.reason ? ` (${exchange.reason})` : ""}`
          : `No reply: ${outcome}${exchange.reason ? `: ${exchange.reason}` : ""}`));
    }
    return item;
  }));
}

async function setTrace(on) {
  const record = detail.record;
  if (!record) return;
  const params = { ...triple(record), trace: on ? "on" : "off" };
  if (on) params.seconds = TRACE_SECONDS;
  for (const id of ["#trace-on", "#trace-off"]) $(id).disabled = true;
  try {
    const answer = await mi("reg_trace", params);
    if (detail.record === record) renderTrace(answer);
  } catch (error) {
    if (detail.record === record) detailError("reg_trace: " + error.message);
  }
  $("#trace-on").disabled = false;
  if (detail.record === record) refreshDetail();
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
  $("#flapping").addEventListener("change", (event) =>
    setView({ flapping: event.target.checked, offset: 0 }));
  $("#records tbody").addEventListener("click", (event) => {
    if (event.target.closest(".actions")) return;
    const row = event.target.closest("tr");
    if (row && row.record) openDetail(row.record);
  });
  const dialog = $("#detail");
  // "close" comes a task after close(): a detail opened again meanwhile stays.
  dialog.addEventListener("close", () => { if (!dialog.open) closeDetail(); });
  // A click on the backdrop (the dialog element itself, outside its content) closes it too.
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  $("#detail-close").addEventListener("click", () => dialog.close());
  $("#trace-on").addEventListener("click", () => setTrace(true));
  $("#trace-off").addEventListener("click", () => setTrace(false));
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
