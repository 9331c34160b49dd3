// Baton's run dashboard: a one-page app on hash routes, plain JS, no build step, no external URL.
// It reads the JSON API next to it (../api/), live through polling and Server-Sent Events.
"use strict";

const API = new URL("../api/", window.location.href);
const LOGIN = new URL("../login", window.location.href);
const POLL_MS = 2000;
const STATUSES = ["running", "completed", "failed", "cancelled"];

let view = 0; // bumped on every navigation: timers and streams of an older view stop
let stream = null; // the run page's EventSource

class Unauthorized extends Error {}

// --- helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, options) {
  const response = await fetch(new URL(path, API), {
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    ...(options || {}),
  });
  if (response.status === 401) {
    showLogin();
    throw new Unauthorized("sign in first");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : `${response.status} ${response.statusText}`;
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return body;
}

function post(path, data) {
  return api(path, { method: "POST", body: JSON.stringify(data || {}) });
}

function when(seconds) {
  if (!seconds) return "";
  const d = new Date(seconds * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

function took(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${(seconds * 1000).toFixed(0)} ms`;
  if (seconds < 120) return `${seconds.toFixed(2)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

function badge(status, text) {
  return h("span", { class: `badge status-${status.replace(/ /g, "-")}`, text: text || status });
}

function shortType(tag) {
  return String(tag).split(".").pop();
}

function setMain(...children) {
  const main = document.getElementById("app");
  main.replaceChildren(...children);
  return main;
}

function failure(error) {
  if (error instanceof Unauthorized) return h("p", { class: "muted", text: "Sign in to continue." });
  return h("p", { class: "error-text", role: "alert", text: String(error.message || error) });
}

function every(ms, token, fn) {
  // run fn now and then every ms while the view lasts (never two rounds at once)
  const round = async () => {
    if (token !== view) return;
    try {
      await fn();
    } catch (error) {
      if (error instanceof Unauthorized) return;
      console.error(error);
    }
    if (token === view) setTimeout(round, ms);
  };
  round();
}

// --- auth ------------------------------------------------------------------------------------

function showLogin() {
  document.getElementById("login").hidden = false;
  document.getElementById("login-token").focus();
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("login-token").value;
  const response = await fetch(LOGIN, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  if (response.ok) {
    window.location.reload();
  } else {
    document.getElementById("login-error").textContent = "wrong token";
  }
});

// --- routing ---------------------------------------------------------------------------------

function route() {
  view += 1;
  if (stream) {
    stream.close();
    stream = null;
  }
  const hash = window.location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === parts[0]);
  }
  const token = view;
  if (parts[0] === "runs" && parts[1]) return runPage(parts[1], token);
  if (parts[0] === "workflows" && parts[1]) return workflowPage(parts[1], token);
  if (parts[0] === "workflows") return workflowsPage(token);
  if (parts[0] === "queues") return queuesPage(token);
  if (parts[0] === "dead-letters") return deadLettersPage(token);
  return runsPage(params.get("status") || "", token);
}

window.addEventListener("hashchange", route);

// --- runs ------------------------------------------------------------------------------------

function runsPage(status, token) {
  const select = h(
    "select",
    {
      id: "status-filter",
      "aria-label": "status",
      onchange: (e) => {
        window.location.hash = e.target.value ? `#/runs?status=${e.target.value}` : "#/runs";
      },
    },
    h("option", { value: "", text: "every status" }),
    STATUSES.map((s) => h("option", { value: s, selected: s === status, text: s })),
  );
  const body = h("tbody");
  const note = h("p", { class: "muted", id: "runs-note" });
  setMain(
    h("div", { class: "toolbar" }, h("h1", { text: "Runs" }), h("label", {}, "Status ", select)),
    h(
      "table",
      { id: "runs-table", class: "grid" },
      h(
        "thead",
        {},
        h("tr", {}, ["run", "workflow", "status", "created", "took", "error"].map((c) => h("th", { text: c }))),
      ),
      body,
    ),
    note,
  );
  const query = new URLSearchParams({ limit: "100" });
  if (status) query.set("status", status);
  every(POLL_MS, token, async () => {
    let data;
    try {
      data = await api(`runs?${query}`);
    } catch (error) {
      note.replaceChildren(failure(error));
      throw error;
    }
    if (token !== view) return;
    body.replaceChildren(...data.runs.map(runRow));
    note.textContent = data.runs.length ? "" : "No runs yet.";
  });
}

function runRow(run) {
  const state = run.state ? run.state.describe : run.status;
  const ended = run.status !== "running";
  return h(
    "tr",
    { "data-run": run.run_id, "data-status": run.status },
    h("td", {}, h("a", { href: `#/runs/${run.run_id}`, class: "mono", text: run.run_id })),
    h("td", { text: run.workflow }),
    h("td", {}, badge(run.state ? run.state.state : run.status, state)),
    h("td", { text: when(run.created) }),
    h("td", { text: ended ? took(run.updated - run.created) : "" }),
    h("td", { class: "error-text", text: run.error ? run.error.type : "" }),
  );
}

// --- one run ---------------------------------------------------------------------------------

function runPage(runId, token) {
  const head = h("div", { id: "run-head" });
  const actions = h("div", { id: "run-actions", class: "actions" });
  const hitl = h("div", { id: "hitl" });
  const outcome = h("div", { id: "run-outcome" });
  const chart = h("div", { id: "gantt", class: "gantt" });
  const graph = h("div", { id: "graph", class: "graph" });
  const log = h("ol", { id: "event-log", class: "log" });
  setMain(
    h("p", {}, h("a", { href: "#/runs", text: "← runs" })),
    head,
    actions,
    hitl,
    outcome,
    h("h2", { text: "Steps and tool calls" }),
    chart,
    h("h2", { text: "Workflow graph" }),
    graph,
    h("h2", { text: "Event log" }),
    log,
  );
  let workflow = null;
  let hitlKey = null;
  let ended = false;
  const refresh = async () => {
    const [run, spans] = await Promise.all([api(`runs/${runId}`), api(`runs/${runId}/spans`)]);
    if (token !== view) return;
    drawHead(head, run);
    drawActions(actions, run, runId);
    const key = JSON.stringify(run.waiting);
    if (key !== hitlKey) {
      hitlKey = key;
      drawHitl(hitl, run, runId, refresh);
    }
    drawOutcome(outcome, run);
    drawGantt(chart, spans);
    if (workflow !== run.workflow) {
      workflow = run.workflow;
      api(`workflows/${encodeURIComponent(workflow)}/graph`)
        .then((g) => token === view && drawGraph(graph, g))
        .catch((error) => graph.replaceChildren(failure(error)));
    }
    ended = run.status !== "running";
  };
  refresh().catch((error) => head.replaceChildren(failure(error)));
  every(POLL_MS, token, async () => {
    if (!ended) await refresh();
  });
  let pending = null; // a burst of log entries (a replay) refreshes once
  followLog(runId, log, token, () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      if (token === view) refresh().catch(console.error);
    }, 150);
  });
}

function drawHead(el, run) {
  const info = run.info;
  const rows = [
    ["run", h("span", { class: "mono", text: info.run_id })],
    ["workflow", h("a", { href: `#/workflows/${encodeURIComponent(run.workflow)}`, text: run.workflow })],
    ["status", h("span", { id: "run-status", "data-status": run.status }, badge(run.state.state, run.state.describe))],
    ["created", when(info.created)],
    ["updated", `${when(info.updated)} (+${(info.updated - info.created).toFixed(3)} s)`],
  ];
  if (info.parent) rows.push(["parent", h("a", { href: `#/runs/${info.parent}`, class: "mono", text: info.parent })]);
  if (run.root !== info.run_id) rows.push(["root", h("a", { href: `#/runs/${run.root}`, class: "mono", text: run.root })]);
  if (run.input) rows.push(["input", h("code", { text: JSON.stringify(run.input.data ?? run.input) })]);
  el.replaceChildren(
    h("h1", { text: `${run.workflow} run` }),
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)])),
  );
}

function drawActions(el, run, runId) {
  const message = h("span", { class: "muted", id: "action-message" });
  const buttons = [];
  if (run.status === "running") {
    buttons.push(
      h("button", {
        id: "cancel-run",
        class: "danger",
        text: "Cancel run",
        onclick: async () => {
          if (!window.confirm("Cancel this run and its children?")) return;
          try {
            const got = await post(`runs/${runId}/cancel`);
            message.textContent = got.cancelled ? "cancelled" : `already ${got.status}`;
          } catch (error) {
            message.replaceChildren(failure(error));
          }
        },
      }),
    );
  }
  if (run.retryable) {
    buttons.push(
      h("button", {
        id: "retry-run",
        text: "Retry (submit its input again)",
        onclick: async () => {
          try {
            const got = await post(`runs/${runId}/retry`);
            window.location.hash = `#/runs/${got.run_id}`;
          } catch (error) {
            message.replaceChildren(failure(error));
          }
        },
      }),
    );
  }
  if (el.dataset.key === `${run.status}/${run.retryable}`) return;
  el.dataset.key = `${run.status}/${run.retryable}`;
  el.replaceChildren(...buttons, message);
}

function template(item) {
  const data = { ...(item.requirements || {}) };
  for (const [name, type] of Object.entries(item.fields || {})) {
    if (name in data) continue;
    data[name] = type === "bool" ? false : type === "int" || type === "float" ? 0 : type === "str" ? "" : null;
  }
  return JSON.stringify(data, null, 2);
}

function drawHitl(el, run, runId, refresh) {
  if (!run.waiting.length || run.status !== "running") {
    el.replaceChildren();
    return;
  }
  const item = run.waiting[0];
  const type = h("input", { id: "hitl-type", name: "type", value: item.name, required: true });
  const fields = h("textarea", { id: "hitl-data", name: "data", rows: 6, spellcheck: "false" });
  fields.value = template(item);
  const message = h("p", { id: "hitl-message", role: "status" });
  const list = run.waiting.map((w) =>
    h(
      "li",
      {},
      h("b", { text: w.name }),
      ` (${w.event_type})`,
      Object.keys(w.fields || {}).length ? ` fields: ${Object.entries(w.fields).map(([k, t]) => `${k}: ${t}`).join(", ")}` : "",
      Object.keys(w.requirements || {}).length ? ` requires ${JSON.stringify(w.requirements)}` : "",
      w.run_id !== runId ? ` in child run ${w.run_id}` : "",
    ),
  );
  const form = h(
    "form",
    {
      id: "hitl-form",
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        let data;
        try {
          data = JSON.parse(fields.value || "{}");
        } catch (error) {
          message.replaceChildren(failure(new Error(`the fields are not JSON: ${error.message}`)));
          return;
        }
        try {
          await post(`runs/${runId}/send`, { type: type.value.trim(), data });
          message.textContent = `sent ${type.value.trim()}`;
          refresh().catch(console.error);
        } catch (error) {
          message.replaceChildren(failure(error));
        }
      },
    },
    h("h2", { text: "Waiting for input" }),
    h("ul", {}, list),
    h("label", { for: "hitl-type", text: "Event type" }),
    type,
    h("label", { for: "hitl-data", text: "Fields (JSON object)" }),
    fields,
    h("button", { type: "submit", id: "hitl-send", text: "Send answer" }),
    message,
  );
  el.replaceChildren(form);
}

function tracebacks(info, out) {
  const details = info && info.details;
  if (!details || typeof details !== "object") return out;
  if (typeof details.traceback === "string") out.push(details.traceback);
  for (const inner of [details.cause, details.child_error]) {
    if (inner && typeof inner === "object") tracebacks(inner, out);
  }
  return out;
}

function drawOutcome(el, run) {
  const parts = [];
  if (run.error) {
    parts.push(
      h(
        "div",
        { class: "card error-card", id: "run-error" },
        h("h2", { text: "Error" }),
        h("p", {}, h("b", { text: run.error.type }), `: ${run.error.message}`),
        tracebacks(run.error, []).map((t) => h("pre", { class: "traceback", text: t })),
      ),
    );
  }
  if (run.status === "completed") {
    parts.push(
      h(
        "div",
        { class: "card", id: "run-result" },
        h("h2", { text: "Result" }),
        h("pre", { text: JSON.stringify(run.result, null, 2) }),
      ),
    );
  }
  const key = JSON.stringify([run.status, run.error, run.result]);
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...parts);
}

function drawGantt(el, data) {
  const key = JSON.stringify(data.rows);
  if (el.dataset.key === key) return; // unchanged: no redraw
  el.dataset.key = key;
  if (!data.rows.length) {
    el.replaceChildren(h("p", { class: "muted", text: "Nothing ran yet." }));
    return;
  }
  const total = data.total || 1e-9;
  const head = h(
    "div",
    { class: "gantt-row gantt-head" },
    ["step / call", "try", "queue", "worker", "start", "took", "", "outcome"].map((c) => h("span", { text: c })),
  );
  const rows = data.rows.map((row) => {
    const left = Math.min(99.5, (row.offset / total) * 100);
    const width = Math.max(0.5, Math.min(100 - left, (row.duration / total) * 100));
    return h(
      "div",
      { class: `gantt-row${row.member ? " member" : " group"}`, "data-outcome": row.style },
      h("span", { class: "label", title: row.label, text: row.member ? `↳ ${row.label.replace(/^[├└]─\s*/, "")}` : row.label }),
      h("span", { class: "num", text: row.attempt }),
      h("span", { text: row.queue }),
      h("span", { class: "worker", title: row.worker, text: row.worker }),
      h("span", { class: "num", text: `+${row.offset.toFixed(3)}s` }),
      h("span", { class: "num", text: took(row.duration) }),
      h(
        "span",
        { class: "track" },
        h("span", {
          class: `gantt-bar outcome-${row.style || "group"}`,
          style: `left:${left}%;width:${width}%`,
          title: `${row.label}: ${row.outcome} (${took(row.duration)})`,
        }),
      ),
      h("span", { class: `outcome outcome-text-${row.style}`, title: row.outcome, text: row.outcome }),
    );
  });
  el.replaceChildren(head, ...rows);
}

function followLog(runId, list, token, onChange) {
  const url = new URL(`runs/${runId}/events`, API);
  const source = new EventSource(url, { withCredentials: true });
  stream = source;
  const kinds = ["event", "stream", "input", "stop", "failed", "cancelled", "retry"];
  let first = null;
  const add = (message) => {
    if (token !== view) return;
    const entry = JSON.parse(message.data);
    first = first === null ? entry.ms : first;
    const data = entry.data;
    let what = "";
    let detail = "";
    if (data && typeof data === "object" && "type" in data && "data" in data) {
      what = shortType(data.type);
      detail = JSON.stringify(data.data);
    } else if (data && typeof data === "object" && "type" in data && "message" in data) {
      what = data.type;
      detail = data.message;
    } else {
      detail = JSON.stringify(data);
    }
    list.append(
      h(
        "li",
        { "data-kind": entry.kind },
        h("span", { class: "num", text: `+${((entry.ms - first) / 1000).toFixed(3)}s` }),
        h("span", { class: `kind kind-${entry.kind}`, text: entry.kind }),
        h("span", { class: "what", text: what + (entry.run ? ` (child ${entry.run.slice(0, 8)})` : "") }),
        h("code", { text: detail }),
      ),
    );
    onChange();
  };
  for (const kind of kinds) source.addEventListener(kind, add);
  source.addEventListener("end", () => {
    source.close();
    onChange();
  });
}

// --- workflows -------------------------------------------------------------------------------

function workflowsPage(token) {
  const body = h("tbody");
  setMain(
    h("h1", { text: "Workflows" }),
    h(
      "table",
      { class: "grid", id: "workflows-table" },
      h("thead", {}, h("tr", {}, ["workflow", "start event", "steps"].map((c) => h("th", { text: c })))),
      body,
    ),
  );
  api("workflows")
    .then((data) => {
      if (token !== view) return;
      body.replaceChildren(
        ...data.workflows.map((w) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(w.name)}`, text: w.name })),
            h("td", { text: w.valid ? `${w.start.name}(${Object.keys(w.start.fields).join(", ")})` : w.problem }),
            h("td", { text: w.steps.join(", ") }),
          ),
        ),
      );
    })
    .catch((error) => body.replaceChildren(h("tr", {}, h("td", { colspan: 3 }, failure(error)))));
}

function workflowPage(name, token) {
  const graph = h("div", { id: "graph", class: "graph" });
  setMain(h("p", {}, h("a", { href: "#/workflows", text: "← workflows" })), h("h1", { text: name }), graph);
  api(`workflows/${encodeURIComponent(name)}/graph`)
    .then((g) => token === view && drawGraph(graph, g))
    .catch((error) => graph.replaceChildren(failure(error)));
}

function layers(graph) {
  // longest-path-free layering: breadth first from the start (cycles keep their first layer)
  const layer = new Map([["start", 0]]);
  const queue = ["start"];
  while (queue.length) {
    const id = queue.shift();
    for (const e of graph.edges) {
      if (e.from === id && !layer.has(e.to) && e.to !== "stop" && e.to !== "outside") {
        layer.set(e.to, layer.get(id) + 1);
        queue.push(e.to);
      }
    }
  }
  let deepest = Math.max(0, ...layer.values());
  for (const node of graph.nodes) {
    if (node.kind === "step" && !layer.has(node.id)) layer.set(node.id, 1);
  }
  deepest = Math.max(deepest, ...layer.values());
  layer.set("stop", deepest + 1);
  if (graph.nodes.some((n) => n.id === "outside")) layer.set("outside", deepest + 1);
  return layer;
}

function drawGraph(el, graph) {
  const layer = layers(graph);
  const columns = new Map();
  for (const node of graph.nodes) {
    const l = layer.get(node.id) || 0;
    if (!columns.has(l)) columns.set(l, []);
    columns.get(l).push(node);
  }
  const W = 150;
  const H = 44;
  const GAP_X = 90;
  const GAP_Y = 46;
  const PAD = 20;
  const pos = new Map();
  let rowsMax = 1;
  for (const [l, nodes] of columns) {
    rowsMax = Math.max(rowsMax, nodes.length);
    nodes.forEach((node, i) => pos.set(node.id, { x: PAD + l * (W + GAP_X), y: PAD + 20 + i * (H + GAP_Y) }));
  }
  const width = PAD * 2 + (Math.max(...columns.keys()) + 1) * (W + GAP_X) - GAP_X;
  const height = PAD * 2 + 40 + rowsMax * (H + GAP_Y);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `step graph of ${graph.workflow}`,
  });
  root.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
        svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }),
      ),
    ),
  );
  const merged = new Map();
  for (const e of graph.edges) {
    const key = `${e.from}->${e.to}`;
    if (!merged.has(key)) merged.set(key, { from: e.from, to: e.to, events: [] });
    merged.get(key).events.push(e.event);
  }
  for (const e of merged.values()) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const label = e.events.join(" | ");
    let path;
    let lx;
    let ly;
    if (e.from === e.to) {
      path = `M ${a.x + W * 0.7} ${a.y} C ${a.x + W * 0.7} ${a.y - 40}, ${a.x + W * 0.3} ${a.y - 40}, ${a.x + W * 0.3} ${a.y}`;
      lx = a.x + W / 2;
      ly = a.y - 34;
    } else {
      const forward = b.x > a.x;
      const x1 = forward ? a.x + W : a.x + W / 2;
      const y1 = forward ? a.y + H / 2 : a.y + H;
      const x2 = forward ? b.x : b.x + W / 2;
      const y2 = forward ? b.y + H / 2 : b.y + H;
      const bend = forward ? 0 : 50;
      path = `M ${x1} ${y1} C ${(x1 + x2) / 2} ${y1 + bend}, ${(x1 + x2) / 2} ${y2 + bend}, ${x2} ${y2}`;
      lx = (x1 + x2) / 2;
      ly = (y1 + y2) / 2 + bend * 0.75 - 6;
    }
    root.append(
      svg(
        "g",
        { class: "edge", "data-from": e.from, "data-to": e.to },
        svg("path", { d: path, "marker-end": "url(#arrow)" }),
        svg("text", { x: lx, y: ly, "text-anchor": "middle" }, label),
      ),
    );
  }
  for (const node of graph.nodes) {
    const p = pos.get(node.id);
    const title = node.kind === "step" ? `${node.label}${node.queue ? ` (queue ${node.queue})` : ""}` : node.label;
    root.append(
      svg(
        "g",
        { class: `node node-${node.kind}`, "data-node": node.id, transform: `translate(${p.x},${p.y})` },
        svg("title", {}, title),
        svg("rect", { width: W, height: H, rx: node.kind === "step" ? 6 : 22 }),
        svg("text", { x: W / 2, y: H / 2 + 5, "text-anchor": "middle" }, node.label),
      ),
    );
  }
  el.replaceChildren(root);
}

// --- queues and dead letters -----------------------------------------------------------------

function queuesPage(token) {
  const body = h("tbody");
  const summary = h("p", { class: "muted", id: "queues-summary" });
  setMain(
    h("h1", { text: "Queues" }),
    h(
      "table",
      { class: "grid", id: "queues-table" },
      h("thead", {}, h("tr", {}, ["queue", "waiting", "workers", "concurrency"].map((c) => h("th", { text: c })))),
      body,
    ),
    summary,
  );
  every(POLL_MS, token, async () => {
    const data = await api("queues").catch((error) => {
      summary.replaceChildren(failure(error));
      throw error;
    });
    if (token !== view) return;
    body.replaceChildren(
      ...data.queues.map((q) =>
        h(
          "tr",
          { "data-queue": q.queue, class: q.depth && !q.workers.length ? "unserved" : "" },
          h("td", { text: q.queue }),
          h("td", { class: "num", text: q.depth }),
          h("td", { text: q.workers.length ? q.workers.map((w) => `${w.name} (${w.pool})`).join(", ") : "none" }),
          h("td", { class: "num", text: q.concurrency }),
        ),
      ),
    );
    summary.textContent = `${data.workers.length} live worker(s), ${data.unacked} message(s) taken and not yet acknowledged, ${data.dead_letters} dead letter(s)`;
  });
}

function deadLettersPage(token) {
  const body = h("div", { id: "dead-letters" });
  setMain(h("h1", { text: "Dead letters" }), body);
  every(POLL_MS * 2, token, async () => {
    const data = await api("dead-letters?limit=100").catch((error) => {
      body.replaceChildren(failure(error));
      throw error;
    });
    if (token !== view) return;
    if (!data.dead_letters.length) {
      body.replaceChildren(h("p", { class: "muted", text: "No dead letters." }));
      return;
    }
    body.replaceChildren(
      h("p", { class: "muted", text: `${data.total} in all; the newest ${data.dead_letters.length}:` }),
      ...data.dead_letters.map((d) =>
        h(
          "details",
          { class: "card dead-letter" },
          h("summary", { text: d.reason }),
          h("pre", { text: JSON.stringify(d.headers, null, 2) }),
          h("pre", { text: d.body }),
        ),
      ),
    );
  });
}

route();
