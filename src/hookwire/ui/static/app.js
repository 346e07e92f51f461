// hookwire ui: the dashboard's pages, plain DOM (no build step). Every value from the database
// is put in the page as text (textContent), never as HTML.
"use strict";

const main = () => document.getElementById("main");
const PAGE = 50;
const CHILDREN = 200;
let live = null; // the live view's EventSource

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    // styles through the CSSOM: the policy (style-src 'self') refuses style attributes
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Replace what ``node`` shows (arrays among ``children`` are spread, as in ``el``). No node:
// the view an answer was for is gone (the user moved on before it came), nothing to show.
function put(node, ...children) {
  if (!node) return;
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(key, value);
  }
  const url = "/api/" + path + (query.toString() ? "?" + query : "");
  const answer = await fetch(url, { credentials: "same-origin" });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}

const fmt = {
  time(iso) { return iso ? new Date(iso).toLocaleString() : ""; },
  ms(value) {
    if (value === null || value === undefined) return "";
    return value >= 1000 ? (value / 1000).toFixed(2) + " s" : Math.round(value) + " ms";
  },
  cost(value) {
    if (value === null || value === undefined) return "";
    const n = Number(value);
    return "$" + (n >= 0.01 || n === 0 ? n.toFixed(2) : n.toPrecision(2));
  },
  int(value) { return value === null || value === undefined ? "" : Number(value).toLocaleString(); },
  duration(span) {
    if (span.latency_ms !== null && span.latency_ms !== undefined) return fmt.ms(span.latency_ms);
    if (span.end_ms && span.start_ms) return fmt.ms(span.end_ms - span.start_ms);
    return "";
  },
};

function badge(status) { return el("span", { class: "badge " + status }, status); }

function tokens(span) {
  const parts = [];
  if (span.input_tokens !== null) parts.push(fmt.int(span.input_tokens) + " in");
  if (span.output_tokens !== null) parts.push(fmt.int(span.output_tokens) + " out");
  return parts.join(" / ");
}

function failed(error) {
  put(main(), el("p", { class: "error-box" }, "Could not load: " + error.message));
}

// -- runs -------------------------------------------------------------------------------------

const FILTERS = ["user", "model", "agent", "status", "since", "until", "min_cost", "q"];

function runRow(run) {
  return el(
    "tr",
    { class: "click run-row", "data-trace": run.trace_id,
      onclick: () => { location.hash = "#/trace/" + encodeURIComponent(run.trace_id); } },
    el("td", {}, fmt.time(run.started_at)),
    el("td", {}, run.name || run.kind),
    el("td", {}, badge(run.status)),
    el("td", {}, run.user_id || ""),
    el("td", {}, run.model || ""),
    el("td", { class: "num" }, tokens(run)),
    el("td", { class: "num" }, fmt.cost(run.cost)),
    el("td", { class: "num" }, fmt.duration(run)),
    el("td", { class: "preview", title: run.input_preview || "" }, run.input_preview || ""),
  );
}

async function showRuns(params) {
  const form = el("form", { class: "filters" });
  const inputs = {};
  for (const name of FILTERS) {
    let input;
    if (name === "status") {
      input = el("select", { name }, ["", "ok", "error", "running"].map(
        (s) => el("option", { value: s, selected: params.get(name) === s }, s || "any")));
    } else {
      const type = name === "since" || name === "until" ? "datetime-local" : "text";
      input = el("input", { name, type, value: params.get(name) || "", size: 12 });
    }
    inputs[name] = input;
    const label = { min_cost: "cost ≥", q: "search" }[name] || name;
    form.append(el("label", {}, label, input));
  }
  form.append(el("button", { class: "primary", type: "submit" }, "Filter"));
  const pause = el("button", { type: "button", id: "live-toggle" }, "Pause live");
  form.append(pause);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const name of FILTERS) if (inputs[name].value) query.set(name, inputs[name].value);
    location.hash = "#/runs" + (query.toString() ? "?" + query : "");
  });
  const body = el("tbody", { id: "runs" });
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ["started", "name", "status", "user", "model", "tokens",
      "cost", "duration", "input"].map((h) => el("th", {}, h)))), body);
  const more = el("button", { class: "more", type: "button" }, "Older runs");
  put(main(), el("h2", {}, "Runs"), form, table, more);
  const filters = {};
  for (const name of FILTERS) filters[name] = params.get(name);
  let cursor = null;
  let newest = null;
  async function load() {
    const page = await api("runs", { ...filters, cursor, limit: PAGE });
    for (const run of page.items) body.append(runRow(run));
    if (!newest && page.items.length) newest = page.items[0].started_at;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (!body.children.length) {
      body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No runs yet.")));
    }
  }
  more.addEventListener("click", () => load().catch(failed));
  await load();
  const filtered = FILTERS.some((name) => filters[name]);
  pause.hidden = filtered; // the live view shows every new run: only unfiltered
  if (filtered) return;
  function listen() {
    live = new EventSource("/api/events" + (newest ? "?after=" + encodeURIComponent(newest) : ""));
    live.addEventListener("run", (event) => {
      const run = JSON.parse(event.data);
      newest = run.started_at;
      const empty = body.querySelector("td[colspan]");
      if (empty) empty.parentNode.remove();
      const old = body.querySelector(`tr[data-trace="${CSS.escape(run.trace_id)}"]`);
      if (old) old.remove();
      body.prepend(runRow(run));
    });
  }
  pause.addEventListener("click", () => {
    if (live) { live.close(); live = null; pause.textContent = "Resume live"; }
    else { listen(); pause.textContent = "Pause live"; }
  });
  listen();
}

// -- a trace ----------------------------------------------------------------------------------

async function showTrace(traceId) {
  const tree = el("div", { class: "tree", id: "tree" });
  const detail = el("div", { class: "detail", id: "detail" },
    el("p", { class: "muted" }, "Click a span to see its input, output, tokens and cost."));
  put(main(), 
    el("h2", {}, "Trace ", el("code", {}, traceId)),
    el("div", { class: "trace" }, tree, detail));
  const roots = await api(`trace/${encodeURIComponent(traceId)}/children`, { limit: CHILDREN });
  if (!roots.items.length) {
    tree.append(el("p", { class: "muted" }, "This trace has no spans (pruned?)."));
    return;
  }
  // the waterfall's scale: the roots' span (children outside it are clipped at the edges)
  const start = Math.min(...roots.items.map((s) => s.start_ms));
  const end = Math.max(...roots.items.map((s) => s.end_ms || s.start_ms + 1));
  const scale = { start, width: Math.max(end - start, 1) };
  addSpans(tree, null, traceId, roots, 0, scale);
  const first = tree.querySelector(".span-row");
  if (first) first.click();
}

function addSpans(container, before, traceId, page, level, scale, parent) {
  for (const span of page.items) {
    container.insertBefore(spanRow(span, traceId, level, scale), before);
  }
  if (page.next_cursor) {
    const more = el("div", { class: "span-row more-row", style: { paddingLeft: `${level * 16 + 8}px` } },
      el("span", { class: "muted" }, "more…"));
    more.addEventListener("click", async () => {
      const next = await api(`trace/${encodeURIComponent(traceId)}/children`,
        { parent, cursor: page.next_cursor, limit: CHILDREN });
      addSpans(container, more, traceId, next, level, scale, parent);
      more.remove();
    });
    container.insertBefore(more, before);
  }
}

function spanRow(span, traceId, level, scale) {
  const left = Math.max(0, Math.min(100, ((span.start_ms - scale.start) / scale.width) * 100));
  const stop = span.end_ms || span.start_ms;
  const width = Math.max(0.2, Math.min(100 - left, ((stop - span.start_ms) / scale.width) * 100));
  const toggle = el("span", { class: "toggle" }, span.children ? "▸" : "");
  const row = el("div", { class: "span-row", "data-span": span.span_id, "data-level": level },
    el("div", { class: "span-name", style: { paddingLeft: `${level * 16}px` } },
      toggle, el("span", { class: "kind" }, span.kind), span.name || "",
      span.status === "error" ? el("span", { class: "badge error" }, span.error_type || "error") : null,
      span.retries ? el("span", { class: "muted" }, ` ↻${span.retries}`) : null),
    el("div", { class: "lane", title: fmt.duration(span) },
      el("div", { class: "bar" + (span.status === "error" ? " error" : ""),
        style: { left: `${left}%`, width: `${width}%` } })));
  let open = false;
  let kids = [];
  row.addEventListener("click", async (event) => {
    document.querySelectorAll(".span-row.selected").forEach((r) => r.classList.remove("selected"));
    row.classList.add("selected");
    showSpan(span.span_id).catch(failedDetail);
    if (!span.children || !event.target.classList.contains("toggle") && open) return;
    if (open) {
      kids.forEach((k) => k.remove());
      kids = [];
      open = false;
      toggle.textContent = "▸";
      return;
    }
    open = true;
    toggle.textContent = "▾";
    const page = await api(`trace/${encodeURIComponent(traceId)}/children`,
      { parent: span.span_id, limit: CHILDREN });
    const holder = document.createDocumentFragment();
    const marker = document.createComment("");
    holder.append(marker);
    addSpans(holder, marker, traceId, page, level + 1, scale, span.span_id);
    kids = Array.from(holder.childNodes);
    row.after(holder);
  });
  return row;
}

function failedDetail(error) {
  put(document.getElementById("detail"), 
    el("p", { class: "error-box" }, error.message));
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

async function showSpan(spanId) {
  const span = await api("span/" + encodeURIComponent(spanId));
  const rows = [
    ["kind", span.kind], ["name", span.name], ["status", span.status],
    ["error", span.error_type], ["started", fmt.time(span.started_at)],
    ["latency", fmt.duration(span)], ["time to first token", fmt.ms(span.ttft_ms)],
    ["model", span.model], ["provider", span.provider],
    ["input tokens", fmt.int(span.input_tokens)], ["output tokens", fmt.int(span.output_tokens)],
    ["cached tokens", fmt.int(span.cached_tokens)],
    ["reasoning tokens", fmt.int(span.reasoning_tokens)],
    ["cost", fmt.cost(span.cost)], ["retries", span.retries || ""],
    ["user", span.user_id], ["org", span.org_id], ["agent", span.agent],
    ["conversation", span.conversation_id], ["span id", span.span_id],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  put(document.getElementById("detail"), 
    el("h3", {}, span.name || span.kind),
    el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
    span.input !== null && span.input !== undefined ? [el("h3", {}, "Input"), el("pre", {}, pretty(span.input))] : null,
    span.output !== null && span.output !== undefined ? [el("h3", {}, "Output"), el("pre", {}, pretty(span.output))] : null,
  );
}

// -- costs ------------------------------------------------------------------------------------

const COLOURS = ["#4c6ef5", "#f76707", "#37b24d", "#ae3ec9", "#1098ad", "#f59f00", "#e64980"];

function barChart(days, series, format = fmt.cost) {
  // series: {label: {day: value}}; stacked bars per day
  const labels = Object.keys(series);
  const totals = days.map((d) => labels.reduce((sum, l) => sum + (series[l][d] || 0), 0));
  const top = Math.max(...totals, 1e-12);
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${days.length * 20 + 40} 180`,
    preserveAspectRatio: "none" });
  days.forEach((day, i) => {
    let y = 170;
    labels.forEach((label, j) => {
      const h = ((series[label][day] || 0) / top) * 150;
      if (!h) return;
      y -= h;
      const rect = svgEl("rect", { x: 30 + i * 20, y, width: 14, height: h,
        fill: COLOURS[j % COLOURS.length] });
      rect.append(svgEl("title", {}));
      rect.firstChild.textContent = `${day} ${label}: ${format(series[label][day])}`;
      svg.append(rect);
    });
  });
  const legend = el("div", { class: "legend" }, labels.map((l, j) =>
    el("span", {}, el("i", { style: { background: COLOURS[j % COLOURS.length] } }), l)));
  return [svg, legend];
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map(([h, num]) => el("th", { class: num ? "num" : "" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c, i) =>
      el("td", { class: headers[i][1] ? "num" : "" }, c))))));
}

async function showCosts(params) {
  const days = params.get("days") || "30";
  const c = await api("costs", { days });
  const total = c.total[0] || {};
  const dayList = [];
  for (let i = Number(days) - 1; i >= 0; i--) {
    dayList.push(new Date(Date.now() - i * 86400000).toISOString().slice(0, 10));
  }
  const series = {};
  for (const r of c.by_day) {
    const label = r.model || "(unknown)";
    series[label] = series[label] || {};
    series[label][r.day] = (series[label][r.day] || 0) + Number(r.cost || 0);
  }
  const budgetRows = c.budgets.map((b) => {
    const used = Math.min(b.used, 1);
    const cls = b.used >= 1 ? "meter over" : b.used >= 0.8 ? "meter warn" : "meter";
    return [`${b.scope} ${b.key}`, b.period, fmt.cost(b.limit), fmt.cost(b.spent),
      fmt.cost(b.remaining),
      el("div", { class: cls, title: Math.round(b.used * 100) + "%" },
        el("div", { style: { width: `${used * 100}%` } })),
      b.per_day === null ? "" : fmt.cost(b.per_day) + "/day",
      b.projected === null ? "" : fmt.cost(b.projected)];
  });
  const groups = ["user", "org", "agent", "model"].map((key) => [
    el("h3", {}, "By " + key),
    table([[key], ["calls", 1], ["tokens", 1], ["cost", 1]],
      c["by_" + key].map((r) => [r[key] ?? "(none)", fmt.int(r.calls), fmt.int(r.total_tokens),
        fmt.cost(r.cost)])),
  ]);
  // the traces' own rollups: tokens by kind per model (calls recorded by TraceStoreCallback)
  const traced = {};
  for (const r of c.traced || []) {
    const t = traced[r.model || "(unknown)"] ||= { calls: 0, input: 0, output: 0, cached: 0,
      reasoning: 0, cost: 0 };
    t.calls += r.calls; t.input += r.input_tokens; t.output += r.output_tokens;
    t.cached += r.cached_tokens; t.reasoning += r.reasoning_tokens; t.cost += Number(r.cost || 0);
  }
  const tracedRows = Object.entries(traced).map(([model, t]) => [model, fmt.int(t.calls),
    fmt.int(t.input), fmt.int(t.output), fmt.int(t.cached), fmt.int(t.reasoning), fmt.cost(t.cost)]);
  put(main(),
    el("h2", {}, `Costs, last ${days} days`),
    el("div", { class: "tiles" },
      tile("spent", fmt.cost(total.cost || 0)), tile("calls", fmt.int(total.calls || 0)),
      tile("input tokens", fmt.int(total.prompt_tokens || 0)),
      tile("output tokens", fmt.int(total.completion_tokens || 0)),
      tile("cached tokens", fmt.int(total.cached_tokens || 0)),
      tile("reasoning tokens", fmt.int(total.reasoning_tokens || 0))),
    el("h3", {}, "Budgets"),
    budgetRows.length
      ? table([["budget"], ["period"], ["limit", 1], ["spent", 1], ["remaining", 1], ["used"],
          ["burn rate", 1], ["projected", 1]], budgetRows)
      : el("p", { class: "muted" }, "No budgets given: start with hookwire ui --budget user=5/month"),
    el("h3", {}, "Spend by day and model"), barChart(dayList, series),
    groups,
    el("h3", {}, "Traced LLM calls: tokens by kind"),
    table([["model"], ["calls", 1], ["input", 1], ["output", 1], ["cached", 1],
      ["reasoning", 1], ["cost", 1]], tracedRows));
}

function tile(label, value) {
  return el("div", { class: "tile" }, el("div", { class: "value" }, value),
    el("div", { class: "label" }, label));
}

// -- health -----------------------------------------------------------------------------------

async function showHealth(params) {
  const hours = params.get("hours") || "24";
  const h = await api("health", { hours });
  const llm = h.llm;
  const byHour = {};
  const hoursList = h.series.map((s) => s.hour.slice(0, 13));
  byHour["calls"] = Object.fromEntries(h.series.map((s) => [s.hour.slice(0, 13), s.calls - s.errors]));
  byHour["errors"] = Object.fromEntries(h.series.map((s) => [s.hour.slice(0, 13), s.errors]));
  put(main(), 
    el("h2", {}, `Health, last ${hours} hours`),
    el("div", { class: "tiles" },
      tile("LLM calls", fmt.int(llm.calls)), tile("errors", fmt.int(llm.errors)),
      tile("retries", fmt.int(h.retries)),
      tile("latency p50", fmt.ms(llm.latency_p50)), tile("p95", fmt.ms(llm.latency_p95)),
      tile("p99", fmt.ms(llm.latency_p99)),
      tile("first token p50", fmt.ms(llm.ttft_p50)), tile("p95", fmt.ms(llm.ttft_p95))),
    el("h3", {}, "Calls and errors per hour"), barChart(hoursList, byHour, fmt.int),
    el("h3", {}, "Latency per hour"),
    table([["hour"], ["calls", 1], ["errors", 1], ["p50", 1], ["p95", 1], ["p99", 1], ["first token p95", 1]],
      h.series.map((s) => [fmt.time(s.hour), fmt.int(s.calls), fmt.int(s.errors),
        fmt.ms(s.latency_p50), fmt.ms(s.latency_p95), fmt.ms(s.latency_p99), fmt.ms(s.ttft_p95)])),
    el("h3", {}, "Errors by type"),
    table([["error"], ["count", 1]], h.errors.map((e) => [e.error_type || "(unknown)", fmt.int(e.count)])),
    el("h3", {}, "Spans by kind"),
    table([["kind"], ["status"], ["spans", 1]], h.kinds.map((k) => [k.kind, k.status, fmt.int(k.spans)])));
}

// -- conversations ----------------------------------------------------------------------------

async function showConversations() {
  const body = el("tbody", {});
  const more = el("button", { class: "more", type: "button" }, "More");
  put(main(), el("h2", {}, "Conversations"),
    el("table", {}, el("thead", {}, el("tr", {}, ["updated", "name", "user", "agent", "state",
      "messages"].map((h) => el("th", {}, h)))), body), more);
  let cursor = null;
  async function load() {
    const page = await api("conversations", { cursor });
    for (const c of page.items) {
      body.append(el("tr", { class: "click",
        onclick: () => { location.hash = "#/conversation/" + encodeURIComponent(c.id); } },
        el("td", {}, fmt.time(c.updated_at)), el("td", {}, c.name || c.id),
        el("td", {}, c.user_id), el("td", {}, c.agent_title || ""),
        el("td", {}, c.state), el("td", { class: "num" }, fmt.int(c.message_count))));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch(failed));
  await load();
}

async function showConversation(id) {
  const c = await api("conversation/" + encodeURIComponent(id));
  put(main(), 
    el("h2", {}, c.name || c.id),
    el("p", { class: "muted" }, `${c.user_id} · ${c.agent_title || ""} · state: `,
      el("strong", {}, c.state)),
    el("div", { class: "chat" }, (c.messages || []).map((m) => el("div", { class: "msg " + m.sender },
      el("div", { class: "meta" }, `${m.sender} · ${fmt.time(m.message_time)}`,
        m.total_tokens ? ` · ${fmt.int(m.total_tokens)} tokens` : "",
        m.run_id ? [" · ", el("a", { href: "#/span/" + encodeURIComponent(m.run_id) }, "trace")] : ""),
      el("div", {}, m.text)))));
}

async function showSpanTrace(spanId) {
  const span = await api("span/" + encodeURIComponent(spanId));
  location.replace("#/trace/" + encodeURIComponent(span.trace_id));
}

// -- routing ----------------------------------------------------------------------------------

async function route() {
  if (live) { live.close(); live = null; }
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/runs").split("/").filter(Boolean).map(decodeURIComponent);
  const view = parts[0] || "runs";
  document.querySelectorAll("nav a").forEach((a) => {
    const mine = a.dataset.view === view || (view === "trace" && a.dataset.view === "runs")
      || (view === "conversation" && a.dataset.view === "conversations");
    a.classList.toggle("active", mine);
  });
  try {
    if (view === "trace") await showTrace(parts[1]);
    else if (view === "span") await showSpanTrace(parts[1]);
    else if (view === "costs") await showCosts(params);
    else if (view === "health") await showHealth(params);
    else if (view === "conversations") await showConversations();
    else if (view === "conversation") await showConversation(parts[1]);
    else await showRuns(params);
  } catch (error) {
    failed(error);
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
