// The gorchester dashboard: polls the /v1 API every INTERVAL ms and redraws nodes, services (with
// their tasks) and recent events; `#/services/NAME` is one service's page (spec, tasks, rollout,
// history, events). With the admin token it acts as the CLI does: scale, undo, drain/activate and
// remove a node, stop a task, follow a task's logs. No build step, no framework; every value from
// the API is set as text, never as HTML. The API token is typed in the header or given once as
// /ui/#token=..., and kept in sessionStorage (this tab only); it goes in an Authorization header,
// never in a URL the server sees.
"use strict";

const INTERVAL = 1500;
const TOKEN_KEY = "gorchester.token";
const API = new URL("../v1/", document.baseURI);
const EVENT_LIMIT = 200;
const EVENT_WINDOW = 4; // a repeat within the last this many lines joins that line (a crash loop cycles)
const LOG_LIMIT = 200_000; // characters kept in the logs panel; older output is dropped

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function takeTokenFromHash() {
  if (location.hash.startsWith("#/")) return;
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

/** The service a `#/services/NAME` hash names, or null for the overview. */
function routedService() {
  const match = /^#\/services\/(.+)$/.exec(location.hash);
  if (!match) return null;
  try { return decodeURIComponent(match[1]); } catch (_) { return null; }
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** What an error answer says: its message, reason or every `errors` line. */
function problemText(body, fallback) {
  if (!body || typeof body !== "object") return fallback;
  if (typeof body.message === "string") return body.message;
  if (typeof body.reason === "string") return body.reason;
  if (Array.isArray(body.errors) && body.errors.length) return body.errors.join("; ");
  return body.error || fallback;
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, API), init);
  let answer = null;
  try { answer = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new ApiError(response.status, problemText(answer, response.statusText || "error"));
  return answer;
}

function get(path) { return call("GET", path); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Times as the CLI and the API show them: ISO 8601 in UTC, to the second.
function when(stamp) {
  if (stamp === null || stamp === undefined || stamp === "") return "";
  const date = new Date(stamp);
  return isNaN(date) ? "" : date.toISOString().replace(/\.\d+Z$/, "Z");
}

function badge(text, kind) { return el("span", { class: "badge " + (kind || text) }, text); }

function button(label, testid, onclick, kind) {
  return el("button", { type: "button", class: "action " + (kind || ""), "data-testid": testid, onclick }, label);
}

function bar(className, share) {
  const node = el("div", { class: className });
  node.style.width = `${Math.min(Math.max(share, 0), 1) * 100}%`; // CSSOM, not a style attribute
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + units[i];
}

function cpu(m) {
  if (m === null || m === undefined) return "?";
  m = Math.round(m);
  return m >= 1000 ? (m / 1000).toFixed(m % 1000 ? 1 : 0) + " cores" : m + "m";
}

function meter(label, allocated, capacity, used, format) {
  const share = capacity ? Math.min(allocated / capacity, 1) : 0;
  const level = share >= 0.95 ? " full" : share >= 0.8 ? " high" : "";
  const usedBar = typeof used === "number" && capacity ? bar("used", used / capacity) : null;
  if (usedBar) usedBar.title = "in use: " + format(used);
  const usedText = typeof used === "number" ? `, ${format(used)} in use` : "";
  return el("div", { class: "meter" },
    el("div", { class: "label" }, el("span", {}, label),
      el("span", {}, `${format(allocated)} / ${format(capacity)} allocated${usedText}`)),
    el("div", { class: "bar", role: "meter", "aria-label": label, "aria-valuenow": Math.round(share * 100) },
      bar("fill" + level, share), usedBar));
}

/** What the node's agent measured in use (`usage.used`), or undefined before its first sample. */
function usedOf(node, key) {
  const value = ((node.usage || {}).used || {})[key];
  return typeof value === "number" ? value : undefined;
}

// -- acting --------------------------------------------------------------------------------------

function notify(text, kind) {
  const notice = document.getElementById("notice");
  document.getElementById("notice-text").textContent = text;
  notice.className = "notice " + kind;
  notice.hidden = false;
}

/** Send a change; say what the API answered (its refusal word for word) and redraw. */
async function act(what, method, path, body) {
  try {
    await call(method, path, body);
    notify(what + ": done", "ok");
  } catch (error) {
    const status = error.status ? ` (${error.status})` : "";
    notify(`${what} refused${status}: ${error.message || "cannot reach the API"}`, "bad");
  }
  refresh();
}

function enc(value) { return encodeURIComponent(value); }

// -- logs ----------------------------------------------------------------------------------------

let logStream = null; // the AbortController of the logs being followed

function closeLogs() {
  if (logStream) logStream.abort();
  logStream = null;
  document.getElementById("logs").hidden = true;
}

/** Follow a task's logs in the panel: fetch with the token, read the body as it streams. */
async function openLogs(taskId) {
  if (logStream) logStream.abort();
  const controller = new AbortController();
  logStream = controller;
  const panel = document.getElementById("logs");
  const output = document.getElementById("log-output");
  const state = document.getElementById("log-state");
  document.getElementById("log-task").textContent = taskId;
  output.textContent = "";
  state.textContent = "following…";
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
  const headers = { Accept: "text/plain" };
  if (token()) headers.Authorization = "Bearer " + token();
  try {
    const response = await fetch(new URL(`tasks/${enc(taskId)}/logs?follow=true&tail=500`, API),
      { headers, cache: "no-store", signal: controller.signal });
    if (!response.ok) {
      let answer = null;
      try { answer = await response.json(); } catch (_) { /* not JSON */ }
      state.textContent = `refused (${response.status}): ${problemText(answer, response.statusText)}`;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const stick = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
      output.append(decoder.decode(value, { stream: true }));
      if (output.textContent.length > LOG_LIMIT) output.textContent = output.textContent.slice(-LOG_LIMIT);
      if (stick) output.scrollTop = output.scrollHeight;
    }
    state.textContent = "ended (the container stopped, or its node stopped answering)";
  } catch (error) {
    if (controller.signal.aborted) return;
    state.textContent = "ended: " + (error.message || "the stream broke");
  } finally {
    if (logStream === controller) logStream = null;
  }
}

// -- nodes ---------------------------------------------------------------------------------------

function nodeActions(node) {
  const id = node.id;
  const actions = [];
  if (node.availability === "drain") {
    actions.push(button("activate", "activate-" + id, () => act(`activate ${id}`, "POST", `nodes/${enc(id)}/activate`)));
  } else {
    actions.push(button("drain", "drain-" + id, () => act(`drain ${id}`, "POST", `nodes/${enc(id)}/drain`)));
  }
  if (node.status === "down") {
    actions.push(button("remove", "remove-" + id, () => act(`remove ${id}`, "DELETE", `nodes/${enc(id)}`), "danger"));
  }
  return el("div", { class: "actions" }, actions);
}

function renderNodes(nodes) {
  document.getElementById("node-count").textContent = `(${nodes.length})`;
  const box = document.getElementById("nodes");
  if (!nodes.length) { box.replaceChildren(el("div", { class: "empty" }, "no node has registered yet")); return; }
  box.replaceChildren(...nodes.map((node) => el("div", { class: "node", "data-testid": "node-" + node.id },
    el("div", { class: "title" }, el("b", {}, node.id),
      el("span", {}, badge(node.status),
        node.availability === "drain" && node.status !== "draining" ? [" ", badge("drain", "draining")] : null)),
    el("div", { class: "muted" }, `${node.address} · ${node.tasks} task${node.tasks === 1 ? "" : "s"}`
      + (Object.keys(node.labels || {}).length ? " · " + Object.entries(node.labels).map(([k, v]) => `${k}=${v}`).join(", ") : "")),
    node.reason ? el("div", { class: "reason" }, node.reason) : null,
    meter("CPU", node.allocated.cpu_millicores, node.capacity.cpu_millicores, usedOf(node, "cpu_millicores"), cpu),
    meter("memory", node.allocated.memory_bytes, node.capacity.memory_bytes, usedOf(node, "memory_bytes"), bytes),
    nodeActions(node))));
}

// -- services and tasks --------------------------------------------------------------------------

function taskLine(task) {
  const ports = (task.ports || []).map((p) => `${p.host_ip}:${p.host_port}→${p.container_port}/${p.protocol}`).join(" ");
  const live = task.state === "running"; // the API refuses to stop any other (409)
  return el("li", { "data-testid": "task-" + task.id },
    el("span", {}, task.id), badge(task.state),
    task.health && task.health !== "none" ? badge(task.health) : null,
    el("span", { class: "muted" }, task.node || "—"),
    ports ? el("span", {}, ports) : null,
    task.restarts ? el("span", { class: "muted" }, `${task.restarts} restart${task.restarts === 1 ? "" : "s"}`) : null,
    task.reason ? el("span", { class: "reason", title: task.reason }, task.reason) : null,
    el("span", { class: "actions" },
      button("logs", "logs-" + task.id, () => openLogs(task.id)),
      live ? button("stop", "stop-" + task.id, () => act(`stop ${task.id}`, "POST", `tasks/${enc(task.id)}/stop`), "danger")
        : null));
}

function taskList(tasks) {
  return tasks.length ? el("ul", { class: "tasks" }, tasks.map(taskLine)) : el("span", { class: "muted" }, "none");
}

function updateCell(update) {
  if (!update) return el("span", { class: "muted" }, "—");
  const extra = update.reason ? ": " + update.reason : "";
  return el("span", {}, badge(update.state || "?"),
    el("span", { class: "muted" }, ` v${update.version} ${update.updated_replicas}/${update.total}${extra}`));
}

function replicasText(svc) {
  const st = svc.status || {};
  return `${st.running_replicas ?? "?"}/${st.desired_replicas ?? svc.replicas ?? "?"} running`;
}

const SERVICE_COLUMNS = ["service", "image", "replicas", "health", "update", "version", "tasks"];
const HISTORY_COLUMNS = ["version", "outcome", "cause", "changed", "why", "at"];

/** A row whose cells carry their column's name, shown above each when a narrow screen stacks the table. */
function labelled(columns, row) {
  [...row.children].forEach((cell, i) => cell.setAttribute("data-label", columns[i]));
  return row;
}

function renderServices(services, tasks) {
  document.getElementById("service-count").textContent = `(${services.length})`;
  const body = document.getElementById("services");
  if (!services.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "no services: apply a config")));
    return;
  }
  body.replaceChildren(...services.map((svc) => {
    const st = svc.status || {};
    const own = tasks.filter((t) => t.service === svc.service_name);
    return labelled(SERVICE_COLUMNS, el("tr", { "data-testid": "service-" + svc.service_name },
      el("td", {}, el("a", { href: "#/services/" + enc(svc.service_name), "data-testid": "open-" + svc.service_name },
        el("b", {}, svc.service_name)), svc.deleting ? [" ", badge("deleting")] : null),
      el("td", { class: "muted" }, svc.image ?? "?"),
      el("td", { class: "replicas", "data-testid": "replicas-" + svc.service_name }, replicasText(svc),
        st.pending_replicas ? el("div", { class: "muted" }, `${st.pending_replicas} pending`) : null,
        st.failed_replicas ? el("div", { class: "muted" }, `${st.failed_replicas} failed`) : null),
      el("td", {}, badge(st.health || "?"), st.reason ? el("div", { class: "reason" }, st.reason) : null),
      el("td", {}, updateCell(svc.update)),
      el("td", {}, svc.version ? "v" + svc.version : "?"),
      el("td", {}, taskList(own))));
  }));
}

// -- the service page ----------------------------------------------------------------------------

function field(name, value) { return [el("dt", {}, name), el("dd", {}, value)]; }

function renderRollout(svc) {
  const update = svc.update;
  const st = svc.status || {};
  const items = [
    ...field("replicas", replicasText(svc) + `, ${st.healthy_replicas ?? "?"} healthy`),
    ...field("health", [badge(st.health || "?"), st.reason ? " " + st.reason : ""]),
    ...field("version", svc.version ? "v" + svc.version : "?"),
  ];
  if (update) {
    items.push(...field("update", [badge(update.state), ` v${update.version}: ${update.updated_replicas}/${update.total} updated`]));
    if (update.reason) items.push(...field("reason", update.reason));
    items.push(...field("started", when(update.started_at) || "—"), ...field("finished", when(update.finished_at) || "—"));
  } else {
    items.push(...field("update", "none yet"));
  }
  document.getElementById("rollout").replaceChildren(el("dl", {}, items));
}

function renderHistory(historyView) {
  const rows = (historyView.versions || []).map((v) => labelled(HISTORY_COLUMNS, el("tr", { "data-testid": "version-" + v.version },
    el("td", {}, "v" + v.version), el("td", {}, badge(v.outcome)), el("td", {}, v.cause),
    el("td", {}, (v.changed || []).join(", ") || "—"),
    el("td", { class: "muted" }, [v.reason, v.outcome_reason].filter(Boolean).join("; ") || ""),
    el("td", { class: "muted" }, when(v.at)))));
  document.getElementById("history").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 6, class: "empty" }, "no history"))]));
}

function renderServicePage(svc, tasks, historyView) {
  document.getElementById("service-title").textContent = svc.service_name;
  document.getElementById("service-image").textContent = svc.image ?? "";
  const scale = document.getElementById("scale-replicas");
  if (document.activeElement !== scale && !scale.dataset.touched) scale.value = svc.replicas ?? "";
  renderRollout(svc);
  document.getElementById("service-tasks").replaceChildren(taskList(tasks));
  const spec = Object.assign({}, svc);
  for (const key of ["status", "update", "rebalance", "autoscale", "created_at", "updated_at", "deleting", "version"]) {
    delete spec[key];
  }
  document.getElementById("spec").textContent = JSON.stringify(spec, null, 2);
  renderHistory(historyView);
}

// -- events --------------------------------------------------------------------------------------

/** What an event is about: its task, else its node, else its service. */
function subject(event) {
  const data = event.data || {};
  return data.task || data.node || data.service || "";
}

/**
 * Events, newest first, with repeats joined: an event of the same type about the same subject, with
 * the same message but for its numbers, as one of the last EVENT_WINDOW lines joins that line (a
 * crash loop's failed/restarted/started cycle stays three lines, however long it loops).
 */
function groupEvents(events) {
  const groups = [];
  for (const event of events) {
    const key = [event.type, subject(event), String(event.message).replace(/\d+/g, "#")].join("\u0000");
    const recent = groups.slice(-EVENT_WINDOW).find((group) => group.key === key);
    if (recent) { recent.count += 1; recent.oldest = event.time; continue; }
    groups.push({ key, event, count: 1, oldest: event.time });
  }
  return groups;
}

function eventFilter() {
  return {
    service: document.getElementById("event-service").value,
    node: document.getElementById("event-node").value,
  };
}

function eventsPath(service, node) {
  return `events?limit=${EVENT_LIMIT}` + (service ? "&service=" + enc(service) : "") + (node ? "&node=" + enc(node) : "");
}

function renderEvents(listId, events) {
  const list = document.getElementById(listId);
  const shown = events.slice().reverse();
  if (!shown.length) { list.replaceChildren(el("li", { class: "empty" }, "no events")); return; }
  list.replaceChildren(...groupEvents(shown).map(({ event, count, oldest }) => el("li", {},
    el("time", { datetime: event.time, title: count > 1 ? "first at " + when(oldest) : null },
      when(event.time)),
    el("span", { class: "type" }, event.type),
    el("span", { class: "message" }, event.message),
    count > 1 ? el("span", { class: "count", "data-testid": "repeat" }, "×" + count) : null)));
}

/** Keep a filter's choices to what exists now (and what is chosen), without losing the choice. */
function fillSelect(id, names, everything) {
  const select = document.getElementById(id);
  const chosen = select.value;
  const all = [...new Set([...names, ...(chosen ? [chosen] : [])])].sort();
  const current = [...select.options].map((o) => o.value).slice(1);
  if (current.join("\u0000") === all.join("\u0000")) return;
  select.replaceChildren(el("option", { value: "" }, everything), ...all.map((name) => el("option", { value: name }, name)));
  select.value = chosen;
}

// -- refreshing ----------------------------------------------------------------------------------

function setStatus(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = "status " + (kind || "");
}

let timer = null;
const drawn = {}; // what each part was last drawn from: unchanged data is not redrawn (clicks stay on their button)

function draw(part, data, render) {
  const key = JSON.stringify(data);
  if (drawn[part] === key) return;
  drawn[part] = key;
  render();
}

async function refreshOverview() {
  const filter = eventFilter();
  const [nodes, services, tasks, events] = await Promise.all(
    [get("nodes"), get("services"), get("tasks"), get(eventsPath(filter.service, filter.node))]);
  draw("nodes", nodes, () => renderNodes(nodes));
  draw("services", [services, tasks], () => renderServices(services, tasks));
  draw("events", events, () => renderEvents("events", events));
  fillSelect("event-service", services.map((s) => s.service_name), "every service");
  fillSelect("event-node", nodes.map((n) => n.id), "every node");
}

async function refreshService(name) {
  const [svc, tasks, historyView, events] = await Promise.all([
    get("services/" + enc(name)), get("tasks?service=" + enc(name)),
    get(`services/${enc(name)}/history`), get(eventsPath(name, ""))]);
  draw("service", [svc, tasks, historyView], () => renderServicePage(svc, tasks, historyView));
  draw("service-events", events, () => renderEvents("service-events", events));
}

function showView(name) {
  document.getElementById("overview").hidden = name !== null;
  document.getElementById("service-page").hidden = name === null;
}

async function refresh() {
  clearTimeout(timer);
  const name = routedService();
  showView(name);
  try {
    const health = await get("health").catch((e) => ({ status: "unavailable", reason: e.message }));
    if (health.cluster) document.getElementById("cluster").textContent = health.cluster;
    await (name === null ? refreshOverview() : refreshService(name));
    if (health.status === "ok") setStatus("live", "ok"); else setStatus(health.reason || "unavailable", "bad");
    document.getElementById("updated").textContent = "Updated " + when(Date.now()) + ".";
  } catch (error) {
    if (error.status === 401) {
      setStatus(token() ? "the token was refused: enter a valid one" : "this API needs a token: enter it above", "bad");
      document.getElementById("token").focus();
    } else if (error.status === 404 && name !== null) {
      setStatus(`no service ${name}: ${error.message}`, "bad");
    } else {
      setStatus(error.message || "cannot reach the API", "bad");
    }
  } finally {
    timer = setTimeout(refresh, INTERVAL);
  }
}

const DRAWN_INTO = ["nodes", "services", "events", "rollout", "service-tasks", "history", "service-events", "spec"];

function onRouteChange() {
  takeTokenFromHash();
  // The other view is emptied, not just hidden: one set of buttons and test ids on the page at a time.
  for (const part of Object.keys(drawn)) delete drawn[part];
  for (const id of DRAWN_INTO) document.getElementById(id).replaceChildren();
  const scale = document.getElementById("scale-replicas");
  delete scale.dataset.touched;
  refresh();
}

function start() {
  takeTokenFromHash();
  document.getElementById("interval").textContent = INTERVAL / 1000;
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    refresh();
  });
  document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); refresh(); });
  document.getElementById("scale-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = routedService();
    const input = document.getElementById("scale-replicas");
    const text = input.value.trim();
    delete input.dataset.touched;
    if (name === null) return;
    if (!/^[0-9]+$/.test(text)) { notify(`scale ${name}: give a whole number of replicas`, "bad"); return; }
    act(`scale ${name} to ${text}`, "POST", `services/${enc(name)}/scale`, { replicas: Number(text) });
  });
  document.getElementById("scale-replicas").addEventListener("input", (event) => { event.target.dataset.touched = "1"; });
  document.getElementById("undo").addEventListener("click", () => {
    const name = routedService();
    if (name !== null) act(`undo ${name}`, "POST", `services/${enc(name)}/undo`);
  });
  document.getElementById("close-logs").addEventListener("click", closeLogs);
  document.getElementById("dismiss").addEventListener("click", () => { document.getElementById("notice").hidden = true; });
  for (const id of ["event-service", "event-node"]) document.getElementById(id).addEventListener("change", refresh);
  window.addEventListener("hashchange", onRouteChange);
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
