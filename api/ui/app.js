// The gorchester dashboard: polls the /v1 API every INTERVAL ms and redraws nodes, services
// (with their tasks) and recent events. No build step, no framework; every value from the API is
// set as text, never as HTML. The API token (when the API requires one) is typed in the header or
// given once as /ui/#token=..., and kept in sessionStorage (this tab only); it goes in an
// Authorization header, never in a URL the server sees.
"use strict";

const INTERVAL = 1500;
const TOKEN_KEY = "gorchester.token";
const API = new URL("../v1/", document.baseURI);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function takeTokenFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function get(path) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(new URL(path, API), { headers, cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = (body && (body.message || body.reason || body.error)) || response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(text, kind) { return el("span", { class: "badge " + (kind || text) }, text); }

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + units[i];
}

function cpu(m) { return m >= 1000 ? (m / 1000).toFixed(m % 1000 ? 1 : 0) + " cores" : m + "m"; }

function meter(label, allocated, capacity, used, format) {
  const share = capacity ? Math.min(allocated / capacity, 1) : 0;
  const level = share >= 0.95 ? " full" : share >= 0.8 ? " high" : "";
  const usedBar = typeof used === "number" && capacity
    ? el("div", { class: "used", style: `width:${Math.min(used / capacity, 1) * 100}%`, title: "in use: " + format(used) })
    : null;
  const usedText = typeof used === "number" ? ` (in use ${format(used)})` : "";
  return el("div", { class: "meter" },
    el("div", { class: "label" }, el("span", {}, label), el("span", {}, `${format(allocated)} / ${format(capacity)}${usedText}`)),
    el("div", { class: "bar", role: "meter", "aria-label": label, "aria-valuenow": Math.round(share * 100) },
      el("div", { class: "fill" + level, style: `width:${share * 100}%` }), usedBar));
}

function usageOf(node, key) {
  const usage = node.usage || {};
  const value = usage[key];
  return typeof value === "number" ? value : undefined;
}

function renderNodes(nodes) {
  document.getElementById("node-count").textContent = `(${nodes.length})`;
  const box = document.getElementById("nodes");
  if (!nodes.length) { box.replaceChildren(el("div", { class: "empty" }, "no node has registered yet")); return; }
  box.replaceChildren(...nodes.map((node) => el("div", { class: "node", "data-testid": "node-" + node.id },
    el("div", { class: "title" }, el("b", {}, node.id), badge(node.status)),
    el("div", { class: "muted" }, `${node.address} · ${node.tasks} task${node.tasks === 1 ? "" : "s"}`
      + (Object.keys(node.labels || {}).length ? " · " + Object.entries(node.labels).map(([k, v]) => `${k}=${v}`).join(", ") : "")),
    meter("CPU", node.allocated.cpu_millicores, node.capacity.cpu_millicores, usageOf(node, "cpu_millicores"), cpu),
    meter("memory", node.allocated.memory_bytes, node.capacity.memory_bytes, usageOf(node, "memory_bytes"), bytes))));
}

function taskLine(task) {
  const ports = (task.ports || []).map((p) => `${p.host_ip}:${p.host_port}→${p.container_port}/${p.protocol}`).join(" ");
  return el("li", { "data-testid": "task-" + task.id },
    el("span", {}, task.id), badge(task.state),
    task.health && task.health !== "none" ? badge(task.health) : null,
    el("span", { class: "muted" }, task.node || "—"),
    ports ? el("span", {}, ports) : null,
    task.restarts ? el("span", { class: "muted" }, `${task.restarts} restart${task.restarts === 1 ? "" : "s"}`) : null,
    task.reason ? el("span", { class: "reason", title: task.reason }, task.reason) : null);
}

function updateCell(update) {
  if (!update) return el("span", { class: "muted" }, "—");
  const state = typeof update === "string" ? update : (update.state || "?");
  const extra = typeof update === "object" && update.reason ? ": " + update.reason : "";
  const version = typeof update === "object" && update.version ? ` v${update.version}` : "";
  return el("span", {}, badge(state), el("span", { class: "muted" }, version + extra));
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
    return el("tr", { "data-testid": "service-" + svc.service_name },
      el("td", {}, el("b", {}, svc.service_name), svc.deleting ? [" ", badge("deleting")] : null),
      el("td", { class: "muted" }, svc.image),
      el("td", { class: "replicas", "data-testid": "replicas-" + svc.service_name },
        `${st.running_replicas ?? "?"}/${st.desired_replicas ?? svc.replicas} running`,
        st.pending_replicas ? el("div", { class: "muted" }, `${st.pending_replicas} pending`) : null,
        st.failed_replicas ? el("div", { class: "muted" }, `${st.failed_replicas} failed`) : null),
      el("td", {}, badge(st.health || "?")),
      el("td", {}, updateCell(svc.update)),
      el("td", {}, "v" + svc.version),
      el("td", {}, own.length ? el("ul", { class: "tasks" }, own.map(taskLine)) : el("span", { class: "muted" }, "none")));
  }));
}

function renderEvents(events) {
  const list = document.getElementById("events");
  if (!events.length) { list.replaceChildren(el("li", { class: "empty" }, "no events yet")); return; }
  list.replaceChildren(...events.slice().reverse().map((event) => el("li", {},
    el("time", { datetime: event.time }, event.time ? new Date(event.time).toLocaleTimeString() : ""),
    el("span", { class: "type" }, event.type),
    el("span", {}, event.message))));
}

function setStatus(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = "status " + (kind || "");
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  try {
    const health = await get("health").catch((e) => ({ status: "unavailable", reason: e.message }));
    if (health.cluster) document.getElementById("cluster").textContent = health.cluster;
    const [nodes, services, tasks, events] = await Promise.all(
      [get("nodes"), get("services"), get("tasks"), get("events?limit=30")]);
    renderNodes(nodes);
    renderServices(services, tasks);
    renderEvents(events);
    if (health.status === "ok") setStatus("live", "ok"); else setStatus(health.reason || "unavailable", "bad");
    document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  } catch (error) {
    if (error.status === 401) {
      setStatus(token() ? "the token was refused: enter a valid one" : "this API needs a token: enter it above", "bad");
      document.getElementById("token").focus();
    } else {
      setStatus(error.message || "cannot reach the API", "bad");
    }
  } finally {
    timer = setTimeout(refresh, INTERVAL);
  }
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
  window.addEventListener("hashchange", () => { takeTokenFromHash(); refresh(); });
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
