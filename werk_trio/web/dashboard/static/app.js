/* werk_trio dashboard: a thin client of the REST API (/api/...).
 *
 * No framework, no build step. Every value from the server reaches the page
 * through textContent or an attribute set by code (never parsed as HTML), and the
 * page's Content-Security-Policy forbids inline scripts besides. The token is
 * kept in this script's memory only (a reload asks for it again) and sent as
 * a bearer header. Views are URL fragments (#/jobs?status=failed), so a view
 * can be bookmarked and the back button works. While the tab is visible the
 * current view re-reads the API every few seconds; hidden, it stops.
 */
"use strict";
(() => {
  const STATUSES = ["scheduled", "queued", "waiting", "active", "aborting", "complete", "failed", "aborted"];
  const FINISHED = ["complete", "failed", "aborted"];
  const PAGE_SIZE = 25;
  const S = {
    token: null,          // the bearer token, in memory only
    config: null,         // GET /api/dashboard
    view: null,           // {refresh()} of the current view
    nav: 0,               // bumped by every navigation: late answers of an old view are dropped
    timer: null,
    refreshMs: refreshSetting(),
    window: 60,           // the overview's chart window, minutes
    selected: new Set(),  // job ids selected on the jobs page
    selectionKey: "",
  };
  const $ = (id) => document.getElementById(id);

  function refreshSetting() {
    const v = Number(new URLSearchParams(location.search).get("refresh"));
    return Number.isFinite(v) && v >= 1 && v <= 60 ? v * 1000 : 3000;
  }

  // --- DOM helpers (text only) ---------------------------------------------

  function h(tag, props, ...kids) {
    const n = document.createElement(tag);
    setProps(n, props);
    append(n, kids);
    return n;
  }

  function setProps(n, props) {
    if (!props) return;
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.setAttribute("class", v);
      else if (k === "text") n.textContent = String(v);
      else if (k === "color") n.style.setProperty("--c", v);
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(n, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      n.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }

  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...kids) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") n.textContent = String(v);
      else if (k === "stroke" || k === "fill") n.style.setProperty(k, v);
      else n.setAttribute(k, String(v));
    }
    append(n, kids);
    return n;
  }

  // --- formatting ------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtSecs(secs) {
    if (secs === null || secs === undefined || !Number.isFinite(Number(secs))) return "—";
    secs = Number(secs);
    if (secs < 1) return `${Math.round(secs * 1000)} ms`;
    if (secs < 90) return `${secs.toFixed(secs < 10 ? 1 : 0)} s`;
    if (secs < 5400) return `${Math.round(secs / 60)} min`;
    if (secs < 172800) return `${(secs / 3600).toFixed(1)} h`;
    return `${(secs / 86400).toFixed(1)} d`;
  }
  function ago(iso) {
    if (!iso) return "—";
    const t = new Date(iso).getTime();
    if (Number.isNaN(t)) return String(iso);
    const secs = (Date.now() - t) / 1000;
    return secs >= 0 ? `${fmtSecs(secs)} ago` : `in ${fmtSecs(-secs)}`;
  }
  function timeCell(iso) { return h("time", { datetime: iso || null, title: fmtTime(iso), text: ago(iso) }); }
  function fmtBytes(n) {
    n = Number(n);
    if (!Number.isFinite(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
  // A count the API marks as an estimate (more than estimate_limit jobs of a
  // queue and status, /api/stats' "estimated") is shown as "~1,000,000".
  const ESTIMATE_NOTE = "an estimate: more than estimate_limit jobs, counted by the planner";
  const isEstimate = (q, st) => (q.estimated || []).includes(st);
  const fmtCount = (n, estimate) => (estimate ? `~${fmtInt(n)}` : fmtInt(n));
  // a table cell of a count: an estimate is marked and explained on hover
  const countCell = (n, estimate) => (estimate
    ? h("span", { class: "estimate", title: ESTIMATE_NOTE, text: fmtCount(n, true) })
    : fmtInt(n));
  const estimateNote = () => h("p", { class: "muted", id: "estimate-note", text: `~ ${ESTIMATE_NOTE}` });
  // the last 8 hex digits: ids are UUIDv7, whose first ones are a timestamp
  const shortId = (id) => String(id || "").slice(-8);
  const firstLine = (text) => String(text || "").split("\n").filter((l) => l.trim()).pop() || "";
  function pretty(value) {
    try { return JSON.stringify(value, null, 2); } catch (e) { return String(value); }
  }
  function badge(status) {
    return h("span", { class: `badge st st-${String(status).replace(/[^a-z]/g, "")}`, text: status });
  }
  const jobLink = (id, text) => h("a", { href: `#/jobs/${encodeURIComponent(id)}`, class: "mono", title: id, text: text || shortId(id) });
  const workerLink = (id, text) => id
    ? h("a", { href: `#/workers/${encodeURIComponent(id)}`, class: "mono", title: id, text: text || shortId(id) })
    : "—";

  // --- the API -----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (S.token) headers.Authorization = `Bearer ${S.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store", credentials: "omit",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, `the server did not answer (${e.message})`);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      let message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status} ${response.statusText}`;
      if (data && Array.isArray(data.detail) && data.detail.length && !data.error) message = pretty(data.detail);
      throw new ApiError(response.status, message);
    }
    return data;
  }
  const get = (path) => api("GET", path);
  const post = (path, body) => api("POST", path, body);
  const put = (path, body) => api("PUT", path, body);

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : "";
  }

  const has = (feature) => Boolean(S.config && S.config.features && S.config.features[feature]);

  /** An optional endpoint (introspection, cron): its data, or an ApiError to
   *  show; not called at all when the server says this build lacks it. */
  async function maybe(path, feature) {
    if (feature && !has(feature)) return new ApiError(501, `this werk_trio has no ${feature} endpoints`);
    try { return await get(path); } catch (e) { if (e.status === 401) throw e; return e; }
  }

  // --- feedback: toasts and confirmations -----------------------------------------

  function toast(message, bad) {
    const t = h("div", { class: bad ? "toast bad" : "toast", role: bad ? "alert" : null, text: message });
    $("toasts").append(t);
    setTimeout(() => t.remove(), bad ? 15000 : 8000);
  }

  function ask(text, okLabel) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel || "Confirm";
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      $("confirm-ok").focus();
    });
  }

  const canAct = () => Boolean(S.config && !S.config.read_only);

  /** A button running an API action: asks first when `confirm` is given,
   *  shows the result (or the API's error) and refreshes the view. None in
   *  read-only mode. */
  function action(label, run, opts = {}) {
    if (!canAct()) return null;
    const b = h("button", { type: "button", class: opts.danger ? "danger" : null, "data-action": opts.name || label });
    b.textContent = label;
    b.addEventListener("click", async () => {
      const question = typeof opts.confirm === "function" ? opts.confirm() : opts.confirm;
      if (question === null) return;
      if (question && !(await ask(question, label))) return;
      b.disabled = true;
      try {
        const message = await run();
        if (message) toast(message);
      } catch (e) {
        if (!handleAuth(e)) toast(`${label}: ${e.message}`, true);
      } finally {
        b.disabled = false;
        await refreshNow();
      }
    });
    return b;
  }

  // --- charts (SVG, drawn here) -----------------------------------------------

  const TIME_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((x) => x * 1000);

  /** A round step of at least 1 (the charts count jobs) for 4 grid lines up to `v`. */
  function niceStep(v) {
    const raw = Math.max(1, v / 4);
    const p = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw && Number.isInteger(m * p)) return m * p;
    return 10 * p;
  }

  /** A line chart: `series` = [{name, color, points: [[ms, value]...]}], x is
   *  time from `from` to `to` (ms), y in `unit`. */
  function lineChart(series, { from, to, unit, label }) {
    const W = 720, H = 230, L = 52, R = 14, T = 22, B = 30;
    const xs = (t) => L + ((t - from) / Math.max(1, to - from)) * (W - L - R);
    const top = 4 * niceStep(Math.max(0, ...series.flatMap((x) => x.points.map((p) => p[1]))));
    const ys = (v) => H - B - (v / top) * (H - T - B);
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    svg.append(s("title", { text: label }));
    const grid = s("g", { class: "grid" });
    for (let i = 0; i <= 4; i += 1) {
      const v = (top / 4) * i;
      grid.append(s("line", { x1: L, x2: W - R, y1: ys(v), y2: ys(v) }));
      svg.append(s("text", { x: L - 6, y: ys(v) + 4, "text-anchor": "end", text: fmtInt(v) }));
    }
    const step = TIME_STEPS.find((x) => (to - from) / x <= 7) || 86400000;
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      const d = new Date(t);
      grid.append(s("line", { x1: xs(t), x2: xs(t), y1: T, y2: H - B }));
      const text = step >= 86400000 ? `${d.getMonth() + 1}/${d.getDate()}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      svg.append(s("text", { x: xs(t), y: H - B + 16, "text-anchor": "middle", text }));
    }
    svg.prepend(grid);
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.append(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    svg.append(s("text", { x: 4, y: 12, text: unit }));
    svg.append(s("text", { x: W - R, y: H - 2, "text-anchor": "end", text: "local time" }));
    for (const x of series) {
      if (!x.points.length) continue;
      const pts = x.points.map(([t, v]) => `${xs(t).toFixed(1)},${ys(v).toFixed(1)}`).join(" ");
      svg.append(s("polyline", { points: pts, fill: "none", stroke: x.color, "stroke-width": 2, "stroke-linejoin": "round" }));
      if (x.points.length === 1) svg.append(s("circle", { cx: xs(x.points[0][0]), cy: ys(x.points[0][1]), r: 3, fill: x.color }));
    }
    const legend = h("div", { class: "legend" }, series.map((x) => {
      const last = x.points.length ? x.points[x.points.length - 1][1] : 0;
      const total = x.points.reduce((a, p) => a + p[1], 0);
      return h("span", { color: x.color, text: `${x.name}: ${x.total ? `${fmtInt(total)} in window` : `${fmtInt(last)} now`}` });
    }));
    return h("div", null, svg, legend);
  }

  /** Horizontal stacked bars: one per queue, a segment per status. */
  function queueBars(queues) {
    const W = 720, rowH = 26, L = 130, R = 60;
    const H = Math.max(1, queues.length) * rowH + 8;
    const totals = queues.map((q) => STATUSES.reduce((a, st) => a + (q[st] || 0), 0));
    const top = Math.max(1, ...totals);
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Jobs by queue and status" });
    svg.append(s("title", { text: "Jobs by queue and status (count)" }));
    queues.forEach((q, i) => {
      const y = 4 + i * rowH;
      const name = q.queue.length > 18 ? `${q.queue.slice(0, 17)}…` : q.queue;
      svg.append(s("text", { x: L - 8, y: y + 15, "text-anchor": "end", text: name }, s("title", { text: q.queue })));
      let x = L;
      for (const st of STATUSES) {
        const n = q[st] || 0;
        if (!n) continue;
        const w = (n / top) * (W - L - R);
        svg.append(s("rect", { x, y: y + 2, width: Math.max(1, w), height: rowH - 8, fill: `var(--s-${st})` },
          s("title", { text: `${q.queue}: ${fmtCount(n, isEstimate(q, st))} ${st}` })));
        x += w;
      }
      svg.append(s("text", { x: x + 6, y: y + 15, text: `${fmtCount(totals[i], (q.estimated || []).length > 0)} jobs` }));
    });
    const legend = h("div", { class: "legend" }, STATUSES.map((st) => h("span", { color: `var(--s-${st})`, text: st })));
    return h("div", null, svg, legend);
  }

  function unavailable(e) {
    return h("p", { class: "muted", text: `Not available: ${e.message}` });
  }

  function throughputChart(rows, minutes, workerId) {
    const by = new Map();
    for (const r of rows) {
      if (workerId && r.worker_id !== null && r.worker_id !== workerId) continue;
      const t = new Date(r.time).getTime();
      const cur = by.get(t) || [0, 0];
      if (!workerId || r.worker_id === workerId) { cur[0] += r.completed || 0; cur[1] += r.failed || 0; }
      by.set(t, cur);
    }
    const times = [...by.keys()].sort((a, b) => a - b);
    const to = Date.now();
    return lineChart([
      { name: "completed", color: "var(--s-complete)", total: true, points: times.map((t) => [t, by.get(t)[0]]) },
      { name: "failed", color: "var(--s-failed)", total: true, points: times.map((t) => [t, by.get(t)[1]]) },
    ], { from: to - minutes * 60000, to, unit: "jobs/min", label: `Jobs finished per minute, last ${minutes} minutes` });
  }

  function depthChart(rows, minutes) {
    const keys = ["queued", "scheduled", "waiting", "active"];
    const by = new Map();
    for (const r of rows) {
      const t = new Date(r.time).getTime();
      const cur = by.get(t) || [0, 0, 0, 0];
      keys.forEach((k, i) => { cur[i] += r[k] || 0; });
      by.set(t, cur);
    }
    const times = [...by.keys()].sort((a, b) => a - b);
    const to = Date.now();
    return lineChart(keys.map((k, i) => ({
      name: k, color: `var(--s-${k})`, points: times.map((t) => [t, by.get(t)[i]]),
    })), { from: to - minutes * 60000, to, unit: "jobs", label: `Queue depth, last ${minutes} minutes` });
  }

  // --- tables ----------------------------------------------------------------------

  function table(columns, rows, opts = {}) {
    const head = h("tr", null, columns.map((c) => h("th", { class: c.num ? "num" : c.cls || null, scope: "col" }, c.head)));
    const body = rows.map((r) => {
      const tr = h("tr", { class: opts.rowClass ? opts.rowClass(r) : null, "data-id": opts.rowId ? opts.rowId(r) : null });
      for (const c of columns) tr.append(h("td", { class: c.num ? "num" : c.cls || null }, c.cell(r)));
      return tr;
    });
    if (!rows.length) {
      body.push(h("tr", null, h("td", { colspan: columns.length, class: "muted", text: opts.empty || "Nothing here." })));
    }
    return h("div", { class: "scroll" }, h("table", { id: opts.id || null }, h("thead", null, head), h("tbody", null, body)));
  }

  const FOCUSABLE = "a[href], button, input, select, textarea, summary";
  /** Replace `box`'s children, keeping the scroll position and the keyboard
   *  focus (on the element at the same place among the focusable ones). */
  function swap(box, ...nodes) {
    const y = window.scrollY;
    const before = [...box.querySelectorAll(FOCUSABLE)];
    const at = before.indexOf(document.activeElement);
    box.replaceChildren(...nodes);
    if (at >= 0) {
      const after = box.querySelectorAll(FOCUSABLE);
      if (after[at]) after[at].focus({ preventScroll: true });
    }
    window.scrollTo(0, y);
  }

  const panel = (title, ...kids) => h("section", { class: "panel" }, title ? h("h2", { text: title }) : null, kids);

  // --- views -------------------------------------------------------------------------

  async function overview() {
    const root = h("div");
    const minutes = S.window;
    const [stats, tput, depth, failed, controls] = await Promise.all([
      get("/api/stats"),
      maybe(`/api/stats/throughput?minutes=${minutes}`, "history"),
      maybe(`/api/stats/queue-depth?minutes=${minutes}`, "history"),
      get("/api/jobs?status=failed&limit=100"),
      maybe("/api/queues", "flow_control"),
    ]);
    const paused = new Set(controls instanceof Error ? [] : controls.filter((q) => q.paused).map((q) => q.name));
    const queues = stats.queues;
    const oldest = await Promise.all(queues.map((q) => (q.queued > 0
      ? get(`/api/jobs${query({ queue: q.queue, status: "queued", limit: 1, offset: Math.min(q.queued - 1, 100000) })}`)
        .then((r) => r[0] || null, () => null)
      : Promise.resolve(null))));
    const sum = (st) => queues.reduce((a, q) => a + (q[st] || 0), 0);
    const guessed = (st) => queues.some((q) => isEstimate(q, st));
    const anyGuess = queues.some((q) => (q.estimated || []).length > 0);
    const card = (id, label, n, color, estimate) => h("div", { class: "card", id: `card-${id}`, color },
      h("div", { class: "n", text: fmtCount(n, estimate), title: estimate ? ESTIMATE_NOTE : null }),
      h("div", { class: "l", text: label }));
    root.append(h("h1", { text: "Overview" }));
    root.append(h("div", { class: "cards" },
      card("total", "jobs in total", stats.total_jobs, "var(--muted)", anyGuess),
      STATUSES.map((st) => card(st, st, sum(st), `var(--s-${st})`, guessed(st))),
      card("workers", "workers online", stats.workers_online, "var(--accent)")));
    const windowButtons = h("div", { class: "actions", role: "group", "aria-label": "Chart window" },
      [[60, "Last hour"], [1440, "Last day"]].map(([m, text]) => h("button", {
        type: "button", "aria-pressed": String(m === minutes), class: m === minutes ? "primary" : null, text,
        onclick: () => { S.window = m; refreshNow(); },
      })));
    root.append(windowButtons);
    root.append(h("div", { class: "grid" },
      panel("Throughput (jobs finished per minute)", tput instanceof Error ? unavailable(tput) : throughputChart(tput, minutes)),
      panel("Queue depth (jobs waiting or running)", depth instanceof Error ? unavailable(depth) : depthChart(depth, minutes))));
    root.append(h("div", { class: "grid" },
      panel("Jobs by queue and status", queues.length ? queueBars(queues) : h("p", { class: "muted", text: "No jobs yet." })),
      panel("Queues", table([
        { head: "queue", cell: (q) => [h("a", { href: `#/jobs${query({ queue: q.queue })}`, text: q.queue }),
          paused.has(q.queue) ? [" ", h("a", { href: "#/queues", title: "paused: see Queues" }, badge("paused"))] : null] },
        ...["queued", "scheduled", "waiting", "active", "failed", "complete"].map((st) => ({ head: st, num: true, cell: (q) => countCell(q[st], isEstimate(q, st)) })),
        { head: "oldest queued", cell: (q) => { const j = oldest[queues.indexOf(q)]; return j ? h("span", null, jobLink(j.id, ago(j.enqueued_at))) : "—"; } },
      ], queues, { id: "queues", rowId: (q) => q.queue, empty: "No queues yet." }),
      anyGuess ? estimateNote() : null)));
    const hourAgo = Date.now() - 3600000;
    const recent = failed.filter((j) => j.completed_at && new Date(j.completed_at).getTime() >= hourAgo);
    root.append(panel(`Failures in the last hour (${recent.length}${recent.length === failed.length && failed.length === 100 ? "+" : ""})`,
      table([
        { head: "when", cell: (j) => timeCell(j.completed_at) },
        { head: "job", cell: (j) => jobLink(j.id) },
        { head: "function", cell: (j) => h("span", { class: "mono wrap", text: j.function }) },
        { head: "queue", cls: "hide-narrow", cell: (j) => j.queue },
        { head: "error", cell: (j) => h("span", { class: "mono wrap", text: firstLine(j.error) }) },
      ], recent, { id: "failures", empty: "No failures in the last hour." })));
    return root;
  }

  function jobFilters(params) {
    const tasks = (S.config && S.config.tasks) || [];
    const f = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs" });
    const field = (label, control) => h("label", null, label, control);
    const queue = h("input", { name: "queue", value: params.get("queue") || "", placeholder: "any", size: 12 });
    const status = h("select", { name: "status" }, h("option", { value: "", text: "any" }),
      STATUSES.map((st) => h("option", { value: st, text: st, selected: params.get("status") === st })));
    const fn = h("input", { name: "function", value: params.get("function") || "", placeholder: "any", list: "task-names", size: 24 });
    const list = h("datalist", { id: "task-names" }, tasks.map((t) => h("option", { value: t })));
    const worker = h("input", { name: "worker_id", value: params.get("worker_id") || "", placeholder: "worker id", size: 14 });
    const search = h("input", { name: "search", type: "search", value: params.get("search") || "", placeholder: "id, key, function, payload", size: 22 });
    f.append(field("Queue", queue), field("Status", status), field("Function", fn), list, field("Worker", worker),
      field("Search", search), h("button", { type: "submit", class: "primary", text: "Filter" }),
      h("button", { type: "button", text: "Clear", onclick: () => { location.hash = "#/jobs"; } }));
    f.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const data = Object.fromEntries(new FormData(f).entries());
      location.hash = `#/jobs${query(data)}`;
    });
    return f;
  }

  function jobsView(params) {
    const key = ["queue", "status", "function", "worker_id", "search"].map((k) => params.get(k) || "").join("|");
    if (key !== S.selectionKey) { S.selected.clear(); S.selectionKey = key; }
    const page = Math.max(0, Number.parseInt(params.get("page") || "0", 10) || 0);
    const root = h("div", null, h("h1", { text: "Jobs" }), jobFilters(params));
    const bulk = h("div", { class: "actions", id: "bulk" });
    const listBox = h("div");
    root.append(bulk, listBox);
    const filters = {
      queue: params.get("queue"), status: params.get("status"), function: params.get("function"),
      worker_id: params.get("worker_id"), search: params.get("search"),
    };

    function bulkBar() {
      bulk.replaceChildren();
      if (!canAct()) return;
      const n = S.selected.size;
      const ids = () => [...S.selected];
      const run = async (verb, call) => {
        const done = [], errors = [];
        for (const id of ids()) {
          try { await call(id); done.push(id); } catch (e) { if (handleAuth(e)) return null; errors.push(e.message); }
        }
        S.selected.clear();
        const msg = `${verb} ${done.length} of ${done.length + errors.length} jobs`;
        if (errors.length) { toast(`${msg}; refused: ${errors.join("; ")}`, true); return null; }
        return msg;
      };
      const many = (verb) => `${verb} ${n} selected job${n === 1 ? "" : "s"}?`;
      bulk.append(h("span", { class: "muted", id: "selected-count", text: `${n} selected` }),
        action("Cancel", () => run("Cancelled", (id) => post(`/api/jobs/${id}/cancel`)), { name: "bulk-cancel", confirm: many("Cancel") }),
        action("Requeue", () => run("Requeued", (id) => post(`/api/jobs/${id}/requeue`)), { name: "bulk-requeue", confirm: many("Requeue") }),
        action("Delete", () => run("Deleted", (id) => api("DELETE", `/api/jobs/${id}`)),
          { name: "bulk-delete", danger: true, confirm: `Delete ${n} selected job${n === 1 ? "" : "s"} for good? Their rows and executions are removed.` }));
      for (const b of bulk.querySelectorAll("button")) b.disabled = n === 0;
    }

    async function refresh() {
      const rows = await get(`/api/jobs${query({ ...filters, limit: PAGE_SIZE + 1, offset: page * PAGE_SIZE })}`);
      const more = rows.length > PAGE_SIZE;
      const jobs = rows.slice(0, PAGE_SIZE);
      const all = h("input", { type: "checkbox", "aria-label": "select every job on this page",
        checked: jobs.length > 0 && jobs.every((j) => S.selected.has(j.id)) });
      all.addEventListener("change", () => {
        for (const j of jobs) { if (all.checked) S.selected.add(j.id); else S.selected.delete(j.id); }
        refreshNow();
      });
      const columns = [
        { head: "job", cell: (j) => jobLink(j.id) },
        { head: "function", cell: (j) => h("span", { class: "mono wrap", text: j.function }) },
        { head: "queue", cell: (j) => j.queue },
        { head: "status", cell: (j) => badge(j.status) },
        { head: "attempts", num: true, cls: "hide-narrow", cell: (j) => `${j.attempts}/${j.max_attempts}` },
        { head: "enqueued", cls: "hide-narrow", cell: (j) => timeCell(j.enqueued_at) },
        { head: "finished", cls: "hide-narrow", cell: (j) => (j.completed_at ? timeCell(j.completed_at) : "—") },
        { head: "error", cls: "hide-narrow", cell: (j) => h("span", { class: "mono wrap", text: firstLine(j.error).slice(0, 120) }) },
      ];
      if (canAct()) {
        columns.unshift({
          head: all,
          cell: (j) => {
            const box = h("input", { type: "checkbox", "aria-label": `select job ${j.id}`, checked: S.selected.has(j.id) });
            box.addEventListener("change", () => { if (box.checked) S.selected.add(j.id); else S.selected.delete(j.id); bulkBar(); box.closest("tr").classList.toggle("selected", box.checked); });
            return box;
          },
        });
      }
      const go = (p) => { const q = new URLSearchParams(params); q.set("page", String(p)); location.hash = `#/jobs?${q}`; };
      swap(listBox,
        table(columns, jobs, { id: "jobs", rowId: (j) => j.id, rowClass: (j) => (S.selected.has(j.id) ? "selected" : null), empty: "No job matches." }),
        h("div", { class: "pager" },
          h("button", { type: "button", text: "← Newer", disabled: page === 0, onclick: () => go(page - 1) }),
          h("span", { class: "muted", text: `page ${page + 1}, jobs ${jobs.length ? page * PAGE_SIZE + 1 : 0}–${page * PAGE_SIZE + jobs.length}` }),
          h("button", { type: "button", text: "Older →", disabled: !more, onclick: () => go(page + 1) })));
      bulkBar();
    }
    return { node: root, refresh };
  }

  const CANCELLABLE = ["scheduled", "queued", "waiting"];
  const ABORTABLE = ["scheduled", "queued", "waiting", "active"];

  async function jobView(id) {
    const [job, executions, deps] = await Promise.all([
      get(`/api/jobs/${encodeURIComponent(id)}`),
      get(`/api/jobs/${encodeURIComponent(id)}/executions`),
      get(`/api/jobs/${encodeURIComponent(id)}/dependencies`),
    ]);
    const root = h("div");
    root.append(h("h1", null, h("span", { class: "mono wrap", text: job.function }), " ", badge(job.status)));
    const acts = h("div", { class: "actions" },
      CANCELLABLE.includes(job.status) ? action("Cancel", async () => { await post(`/api/jobs/${job.id}/cancel`); return `Cancelled job ${job.id}`; },
        { name: "cancel", confirm: `Cancel job ${shortId(job.id)} (${job.function})? It will not run.` }) : null,
      ABORTABLE.includes(job.status) ? action("Abort", async () => { await post(`/api/jobs/${job.id}/abort`); return `Abort sent to job ${job.id}`; },
        { name: "abort", confirm: `Abort job ${shortId(job.id)}? A running job is stopped.` }) : null,
      FINISHED.includes(job.status) ? action("Requeue", async () => { await post(`/api/jobs/${job.id}/requeue`); return `Requeued job ${job.id}`; },
        { name: "requeue", confirm: `Queue job ${shortId(job.id)} (${job.function}) again?` }) : null,
      action("Delete", async () => { await api("DELETE", `/api/jobs/${job.id}`); location.hash = "#/jobs"; return `Deleted job ${job.id}`; },
        { name: "delete", danger: true, confirm: `Delete job ${shortId(job.id)} (${job.function}) for good?` }));
    root.append(acts);
    if (job.progress !== null && job.progress !== undefined) {
      const pct = `${Math.round(job.progress * 100)}%`;
      root.append(panel("Progress", h("div", { class: "progress", id: "progress" },
        h("progress", { max: 1, value: job.progress, "aria-label": `progress ${pct}` }),
        h("span", { text: job.progress_message ? `${pct} · ${job.progress_message}` : pct }))));
    }
    const fields = [
      ["id", h("span", { class: "mono", text: job.id })], ["function", h("span", { class: "mono", text: job.function })],
      ["queue", h("a", { href: `#/jobs${query({ queue: job.queue })}`, text: job.queue })], ["status", badge(job.status)],
      ["priority", job.priority], ["attempts", `${job.attempts} of ${job.max_attempts}`],
      ["key", job.key || "—"], ["group", job.group_key || "—"], ["worker", workerLink(job.worker_id, job.worker_id)],
      ["enqueued", fmtTime(job.enqueued_at)], ["scheduled for", fmtTime(job.scheduled_at)],
      ["started", fmtTime(job.started_at)], ["finished", fmtTime(job.completed_at)],
      ["expires", fmtTime(job.expires_at)], ["timeout", fmtSecs(job.timeout_secs)],
      ["heartbeat", fmtSecs(job.heartbeat_secs)], ["cron", job.cron_name || "—"],
    ];
    root.append(h("div", { class: "grid" },
      panel("Fields", h("dl", { class: "fields", id: "fields" }, fields.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)]))),
      h("div", null,
        panel("Payload", h("pre", { id: "payload", text: pretty({ args: job.args, kwargs: job.kwargs }) })),
        panel("Result", h("pre", { id: "result", text: job.result === null ? "null" : pretty(job.result) })),
        job.meta && Object.keys(job.meta).length ? panel("Meta", h("pre", { text: pretty(job.meta) })) : null,
        job.error ? panel("Error", h("pre", { id: "error", class: "error", text: job.error })) : null)));
    root.append(panel(`Executions (${executions.length})`, executions.length ? executions.map((e) => h("details", { open: true, class: "execution" },
      h("summary", null, `attempt ${e.attempt} `, badge(e.status), ` · started ${fmtTime(e.started_at)}`,
        e.completed_at && e.started_at ? ` · ${fmtSecs((new Date(e.completed_at) - new Date(e.started_at)) / 1000)}` : "",
        " · worker ", workerLink(e.worker_id)),
      e.error ? h("pre", { class: "traceback", text: e.error }) : h("p", { class: "muted", text: "no error" }))) : h("p", { class: "muted", text: "Not run yet." })));
    root.append(panel(`Depends on (${deps.length})`, deps.length
      ? h("ul", { id: "deps" }, deps.map((d) => h("li", null, jobLink(d, d))))
      : h("p", { class: "muted", text: "No dependencies." })));
    return root;
  }

  const limitText = (q) => (q.max_running === null ? "—" : `${fmtInt(q.max_running)}${q.limit_by ? ` per ${q.limit_by}` : ""}`);
  const rateText = (q) => (q.rate_n === null ? "—"
    : `${fmtInt(q.rate_n)} per ${q.rate_per_seconds} s${q.rate_by ? ` per ${q.rate_by}` : ""}`);

  async function queuesView() {
    const rows = await maybe("/api/queues", "flow_control");
    const root = h("div", null, h("h1", { text: "Queues" }));
    if (rows instanceof Error) { root.append(panel(null, unavailable(rows))); return root; }
    const enc = (n) => encodeURIComponent(n);
    root.append(panel(null, table([
      { head: "queue", cell: (q) => h("a", { href: `#/jobs${query({ queue: q.name })}`, class: "wrap", text: q.name }) },
      { head: "state", cell: (q) => (q.paused ? h("span", { title: `paused at ${fmtTime(q.paused_at)}` }, badge("paused")) : badge("active")) },
      { head: "max running", cell: (q) => limitText(q) },
      { head: "rate", cell: (q) => rateText(q) },
      ...["queued", "scheduled", "active", "waiting"].map((st) => ({ head: st, num: true, cell: (q) => countCell(q.counts[st], isEstimate(q, st)) })),
      ...["failed", "complete"].map((st) => ({ head: st, num: true, cls: "hide-narrow", cell: (q) => countCell(q.counts[st], isEstimate(q, st)) })),
      ...(canAct() ? [{ head: "actions", cell: (q) => h("div", { class: "row" },
        q.paused
          ? action("Resume", async () => { await post(`/api/queues/${enc(q.name)}/resume`); return `Resumed queue ${q.name}`; }, { name: "resume" })
          : action("Pause", async () => { await post(`/api/queues/${enc(q.name)}/pause`); return `Paused queue ${q.name}`; },
            { name: "pause", confirm: `Pause queue ${q.name}? No worker starts its jobs until it is resumed; running ones finish.` }),
        h("button", { type: "button", "data-action": "limits", text: "Limits…", onclick: () => openLimits(q) })) }] : []),
    ], rows, { id: "queue-controls", rowId: (q) => q.name, empty: "No queue has jobs or controls yet." }),
    rows.some((q) => (q.estimated || []).length > 0) ? estimateNote() : null));
    return root;
  }

  /** The limits editor: a form over the queue's current controls; Save sets
   *  (PUT) or removes (DELETE) each limit through the API. */
  function openLimits(q) {
    const dialog = $("limits");
    dialog.dataset.queue = q.name;
    $("limits-queue").textContent = q.name;
    $("limits-max").value = q.max_running ?? "";
    $("limits-by").value = q.limit_by ?? "";
    $("rate-n").value = q.rate_n ?? "";
    $("rate-per").value = q.rate_per_seconds ?? "";
    $("rate-by").value = q.rate_by ?? "";
    $("limits-error").textContent = "";
    dialog.showModal();
    $("limits-max").focus();
  }

  function setupLimits() {
    const dialog = $("limits");
    $("limits-cancel").addEventListener("click", () => dialog.close());
    $("limits-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = dialog.dataset.queue;
      const path = `/api/queues/${encodeURIComponent(name)}`;
      const error = $("limits-error");
      error.textContent = "";
      const count = (id, label) => {
        const text = $(id).value.trim();
        if (text === "") return null;
        const n = Number(text);
        if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: a whole number, 1 or more (empty: no limit).`);
        return n;
      };
      let max, n, per;
      try {
        max = count("limits-max", "Max running");
        n = count("rate-n", "Rate");
        per = $("rate-per").value.trim() === "" ? 1 : Number($("rate-per").value);
        if (n !== null && (!Number.isFinite(per) || per <= 0)) throw new Error("Per seconds: a number of seconds above 0.");
      } catch (e) {
        error.textContent = e.message;
        return;
      }
      const by = (id) => $(id).value.trim() || null;
      $("limits-submit").disabled = true;
      try {
        if (max === null) await api("DELETE", `${path}/limits`);
        else await put(`${path}/limits`, { max_running: max, partition_by: by("limits-by") });
        if (n === null) await api("DELETE", `${path}/rate`);
        else await put(`${path}/rate`, { n, per_seconds: per, partition_by: by("rate-by") });
        dialog.close();
        toast(`Saved the limits of queue ${name}`);
      } catch (e) {
        if (!handleAuth(e)) error.textContent = `The API refused it: ${e.message}`;
      } finally {
        $("limits-submit").disabled = false;
        await refreshNow();
      }
    });
  }

  function workerState(w) {
    const interval = (w.metadata && w.metadata.heartbeat_interval) || null;
    if (w.status === "running" && interval && w.heartbeat_age > 3 * interval) return "dead";
    return w.status || "unknown";
  }

  async function workersView() {
    const [workers, active] = await Promise.all([get("/api/workers"), get("/api/jobs?status=active,aborting&limit=500")]);
    const running = new Map();
    for (const j of active) running.set(j.worker_id, (running.get(j.worker_id) || 0) + 1);
    return h("div", null, h("h1", { text: `Workers (${workers.length})` }), panel(null, table([
      { head: "name", cell: (w) => workerLink(w.id, w.name || shortId(w.id)) },
      { head: "state", cell: (w) => badge(workerState(w)) },
      { head: "type", cell: (w) => w.worker_type || "—" },
      { head: "queues", cell: (w) => (w.queues || []).join(", ") },
      { head: "concurrency", num: true, cell: (w) => w.concurrency ?? "—" },
      { head: "running", num: true, cell: (w) => fmtInt(running.get(w.id) || 0) },
      { head: "heartbeat", cell: (w) => (w.heartbeat_age === null ? "—" : `${fmtSecs(w.heartbeat_age)} ago`) },
      { head: "started", cls: "hide-narrow", cell: (w) => timeCell(w.started_at) },
      { head: "host / pid", cls: "hide-narrow", cell: (w) => `${w.hostname || "?"} / ${w.pid ?? "?"}` },
    ], workers, { id: "workers", rowId: (w) => w.id, empty: "No worker is registered." })));
  }

  async function workerView(id) {
    const [w, jobs, tput] = await Promise.all([
      get(`/api/workers/${encodeURIComponent(id)}`),
      get(`/api/workers/${encodeURIComponent(id)}/jobs?limit=50`),
      maybe("/api/stats/throughput?minutes=60", "history"),
    ]);
    const fields = [["id", h("span", { class: "mono", text: w.id })], ["name", w.name], ["state", badge(workerState(w))],
      ["type", w.worker_type || "—"], ["queues", (w.queues || []).join(", ")], ["concurrency", w.concurrency ?? "—"],
      ["host", w.hostname || "—"], ["pid", w.pid ?? "—"], ["started", fmtTime(w.started_at)],
      ["last heartbeat", `${fmtTime(w.heartbeat_at)} (${fmtSecs(w.heartbeat_age)} ago)`]];
    return h("div", null, h("h1", null, "Worker ", h("span", { class: "mono", text: w.name || w.id })),
      h("div", { class: "grid" },
        panel("Fields", h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)]))),
        panel("Throughput (jobs finished per minute)", tput instanceof Error ? unavailable(tput) : throughputChart(tput, 60, w.id))),
      panel("Its jobs (running first, then the last it ran)", table([
        { head: "job", cell: (j) => jobLink(j.id) },
        { head: "function", cell: (j) => h("span", { class: "mono wrap", text: j.function }) },
        { head: "status", cell: (j) => badge(j.status) },
        { head: "started", cell: (j) => timeCell(j.started_at) },
        { head: "finished", cell: (j) => (j.completed_at ? timeCell(j.completed_at) : "—") },
      ], jobs, { id: "worker-jobs", empty: "This worker has run no job that is still kept." })));
  }

  async function cronView() {
    const rows = await maybe("/api/cron", "cron");
    const root = h("div", null, h("h1", { text: "Cron" }));
    if (rows instanceof Error) { root.append(panel(null, unavailable(rows))); return root; }
    const enc = (n) => encodeURIComponent(n);
    root.append(panel(null, table([
      { head: "name", cell: (c) => h("span", { class: "mono wrap", text: c.name }) },
      { head: "schedule", cell: (c) => h("span", { class: "mono", text: c.schedule || c.cron || "—" }) },
      { head: "function", cls: "hide-narrow", cell: (c) => h("span", { class: "mono wrap", text: c.function || "—" }) },
      { head: "queue", cls: "hide-narrow", cell: (c) => c.queue || "—" },
      { head: "state", cell: (c) => badge(c.removed ? "removed" : c.paused ? "paused" : "active") },
      { head: "next run", cell: (c) => (c.paused ? "paused" : timeCell(c.next_run_at)) },
      { head: "last run", cell: (c) => timeCell(c.last_run_at) },
      { head: "last status", cell: (c) => (c.last_status ? (c.last_job_id ? jobLink(c.last_job_id, c.last_status) : badge(c.last_status)) : "—") },
      { head: "runs", num: true, cell: (c) => `${fmtInt(c.total_runs)}${c.failed_runs ? ` (${fmtInt(c.failed_runs)} failed)` : ""}` },
      ...(canAct() ? [{ head: "actions", cell: (c) => h("div", { class: "row" },
        c.paused
          ? action("Resume", async () => { await post(`/api/cron/${enc(c.name)}/resume`); return `Resumed ${c.name}`; }, { name: "resume" })
          : action("Pause", async () => { await post(`/api/cron/${enc(c.name)}/pause`); return `Paused ${c.name}`; }, { name: "pause" }),
        action("Trigger", async () => {
          const r = await post(`/api/cron/${enc(c.name)}/trigger`);
          return r && r.job ? `Triggered ${c.name}: job ${r.job.id}` : `Triggered ${c.name}`;
        }, { name: "trigger", confirm: `Run ${c.name} now, outside its schedule?` })) }] : []),
    ], rows, { id: "cron", rowId: (c) => c.name, empty: "No cron schedule is registered." })));
    return root;
  }

  /** Server facts are re-read live; the forms below them are built once, so
   *  a refresh never resets what the operator is typing. */
  function maintenanceView() {
    const infoBox = h("div");
    const root = h("div", null, h("h1", { text: "Maintenance" }), infoBox);
    async function refresh() {
      const info = await maybe("/api/server", "server_info");
      swap(infoBox, serverInfo(info));
    }
    if (canAct()) root.append(maintenanceActions());
    return { node: root, refresh };
  }

  function serverInfo(info) {
    if (info instanceof Error) return panel("Server", unavailable(info));
    const facts = [
      ["Postgres", info.pg_version], ["database size", fmtBytes(info.db_size_bytes)],
      ["werk_trio", info.werk_trio_version], ["mode", info.read_only ? "read-only" : "read-write"],
      ["truncate", info.truncate_enabled ? "allowed" : "off"],
    ];
    return h("div", { class: "grid" },
      panel("Server", h("dl", { class: "fields", id: "server" },
        facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v ?? "—" })]))),
      panel("Tables", table([
        { head: "table", cell: (t) => h("span", { class: "mono", text: t.name }) },
        { head: "size", num: true, cell: (t) => fmtBytes(t.size_bytes) },
        { head: "rows (estimate)", num: true, cell: (t) => fmtInt(t.row_count) },
      ], Array.isArray(info.tables) ? info.tables : [], { id: "tables" })));
  }

  function maintenanceActions() {
    const days = h("input", { id: "purge-days", type: "number", min: 0, step: "any", value: 30, size: 6 });
    const boxes = FINISHED.map((st) => h("label", { class: "inline" },
      h("input", { type: "checkbox", name: "purge-status", value: st, checked: true }), st));
    const picked = () => boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    const purgeError = h("p", { class: "error", role: "alert", id: "purge-error" });
    const purgeQuestion = () => {
      purgeError.textContent = "";
      const d = Number(days.value);
      if (days.value === "" || !Number.isFinite(d) || d < 0) { purgeError.textContent = "Days: a number of days, 0 or more."; return null; }
      if (!picked().length) { purgeError.textContent = "Pick at least one status to purge."; return null; }
      const when = d === 0 ? "whatever their age" : `finished more than ${d} day${d === 1 ? "" : "s"} ago`;
      return `Delete every ${picked().join(", ")} job ${when}, with their executions? This cannot be undone.`;
    };
    return h("div", { class: "grid" },
      panel("Sweep and vacuum", h("p", { class: "muted", text: "A sweep rescues the jobs of dead workers, expires TTLs and deletes rows past their retention (what every worker does on its own schedule). Vacuum runs VACUUM ANALYZE on the werk tables." }),
        h("div", { class: "actions" },
          action("Sweep now", async () => { const r = await post("/api/server/sweep"); return `Sweep: ${Object.entries(r).filter(([k]) => k !== "job_ids").map(([k, v]) => `${k} ${v}`).join(", ")}`; }, { name: "sweep" }),
          action("Vacuum", async () => { await post("/api/server/vacuum"); return "Vacuumed the werk tables"; }, { name: "vacuum", confirm: "Run VACUUM ANALYZE on the werk tables now?" }))),
      panel("Purge finished jobs", h("div", { class: "row" }, boxes, h("label", null, "older than (days)", days)), purgeError,
        h("div", { class: "actions" }, action("Purge…", async () => {
          const r = await post("/api/jobs/purge", { statuses: picked(), older_than_days: Number(days.value) });
          return `Purged ${fmtInt(r.purged)} jobs`;
        }, { name: "purge", danger: true, confirm: purgeQuestion }))),
      panel("Bulk", h("div", { class: "actions" },
        action("Requeue every failed or aborted job", async () => { const r = await post("/api/jobs/requeue", {}); return `Requeued ${fmtInt(r.requeued)} jobs`; },
          { name: "requeue-failed", confirm: "Queue every failed and aborted job again?" }),
        action("Cancel every waiting job", async () => { const r = await post("/api/jobs/cancel", {}); return `Cancelled ${fmtInt(r.cancelled)} jobs`; },
          { name: "cancel-queued", danger: true, confirm: "Cancel every queued, scheduled and waiting job of every queue?" }),
        S.config.allow_truncate ? action("Truncate", async () => { await post("/api/server/truncate"); return "Deleted every werk row"; },
          { name: "truncate", danger: true, confirm: "Delete EVERY job, execution and worker row of this app? This cannot be undone." }) : null)));
  }

  // --- the "send job" form ---------------------------------------------------------------

  function setupSend() {
    const dialog = $("send");
    const select = $("send-function");
    $("send-open").addEventListener("click", () => {
      const tasks = (S.config && S.config.tasks) || [];
      const current = select.value;
      select.replaceChildren(...(tasks.length ? tasks.map((t) => h("option", { value: t, text: t, selected: t === current }))
        : [h("option", { value: "", text: "no task is registered (@app.task)" })]));
      $("send-error").textContent = "";
      dialog.showModal();
      select.focus();
    });
    $("send-cancel").addEventListener("click", () => dialog.close());
    $("send-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = $("send-error");
      error.textContent = "";
      const body = { function: select.value, queue: $("send-queue").value.trim() };
      try {
        if (!body.function) throw new Error("Function: pick a registered task.");
        if (!body.queue) throw new Error("Queue: a queue name is required.");
        let args, kwargs;
        try { args = JSON.parse($("send-args").value || "[]"); } catch (e) { throw new Error(`Args: not valid JSON (${e.message}).`); }
        if (!Array.isArray(args)) throw new Error("Args: must be a JSON array, e.g. [1, \"two\"].");
        try { kwargs = JSON.parse($("send-kwargs").value || "{}"); } catch (e) { throw new Error(`Kwargs: not valid JSON (${e.message}).`); }
        if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs)) throw new Error("Kwargs: must be a JSON object, e.g. {\"name\": \"Ada\"}.");
        const bad = Object.keys(kwargs).find((k) => k.startsWith("_"));
        if (bad) throw new Error(`Kwargs: ${bad}: keys may not start with '_'.`);
        const priority = Number($("send-priority").value || "0");
        if (!Number.isInteger(priority)) throw new Error("Priority: a whole number.");
        body.args = args; body.kwargs = kwargs; body.priority = priority;
        const delay = $("send-delay").value;
        if (delay !== "") {
          const d = Number(delay);
          if (!Number.isFinite(d) || d < 0) throw new Error("Delay: a number of seconds, 0 or more.");
          body.delay = d;
        }
        if ($("send-key").value.trim()) body.key = $("send-key").value.trim();
      } catch (e) {
        error.textContent = e.message;
        return;
      }
      $("send-submit").disabled = true;
      try {
        const job = await post("/api/jobs", body);
        dialog.close();
        toast(`Enqueued job ${job.id} (${job.function})`);
        location.hash = `#/jobs/${job.id}`;
      } catch (e) {
        if (!handleAuth(e)) error.textContent = `The API refused it: ${e.message}`;
      } finally {
        $("send-submit").disabled = false;
      }
    });
  }

  // --- login -------------------------------------------------------------------------

  function handleAuth(e) {
    if (!(e instanceof ApiError) || e.status !== 401) return false;
    S.token = null;
    showLogin(S.config ? "The token was refused: log in again." : "");
    return true;
  }

  function showLogin(message) {
    stopTimer();
    S.view = null;
    S.config = null;
    chrome();
    const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true, "aria-describedby": "login-error" });
    const error = h("p", { class: "error", id: "login-error", role: "alert", text: message || "" });
    const form = h("form", { class: "panel login", "aria-labelledby": "login-title" },
      h("h1", { id: "login-title", text: "Log in" }),
      h("p", { class: "muted", text: "This API needs its bearer token (the first line of werk api's --token-file). It is kept in this page's memory only." }),
      h("label", null, "Token", input), error, h("button", { type: "submit", class: "primary", text: "Log in" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      S.token = input.value.trim();
      if (!S.token) { error.textContent = "Type the token."; return; }
      try {
        await start();
      } catch (e) {
        S.token = null;
        error.textContent = e.status === 401 ? "That token was refused." : e.message;
      }
    });
    $("main").replaceChildren(form);
    input.focus();
  }

  // --- routing and live updates ------------------------------------------------------------

  function stopTimer() { clearTimeout(S.timer); S.timer = null; }

  function schedule() {
    stopTimer();
    const live = $("live");
    if (document.hidden) { live.textContent = "paused (tab hidden)"; return; }
    if (S.view) S.timer = setTimeout(tick, S.refreshMs);
  }

  async function tick() {
    if (document.querySelector("dialog[open]") || document.activeElement?.matches?.("input:not([type=checkbox]), select, textarea")) {
      schedule();  // the user is typing or deciding: keep the page still
      return;
    }
    await refreshNow();
  }

  async function refreshNow() {
    const view = S.view;
    if (!view) return;
    const live = $("live");
    try {
      await view.refresh();
      if (view === S.view) live.textContent = `updated ${fmtTime(new Date().toISOString()).slice(11)}`;
    } catch (e) {
      if (handleAuth(e)) return;
      if (view === S.view) live.textContent = `update failed: ${e.message}`;
    }
    if (view === S.view) schedule();
  }

  /** A view built by an async function into <main>, rebuilt on each refresh
   *  (views with their own state, like the jobs page, return {node, refresh}). */
  function simple(build) {
    const nav = S.nav;
    return {
      async refresh() {
        const node = await build();
        if (nav === S.nav) swap($("main"), node);
      },
    };
  }

  function chrome() {
    const authed = Boolean(S.config);
    $("logout").hidden = !(authed && S.token);
    $("send-open").hidden = !(authed && canAct());
    $("mode").hidden = !(authed && S.config.read_only);
  }

  async function route() {
    S.nav += 1;
    stopTimer();
    const [path, q] = (location.hash.replace(/^#\/?/, "") || "").split("?");
    const params = new URLSearchParams(q || "");
    const [page, arg] = path.split("/").map(decodeURIComponent);
    const name = page || "overview";
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    let view;
    if (name === "overview") { view = simple(overview); document.title = "Overview · werk_trio"; }
    else if (name === "jobs" && arg) { view = simple(() => jobView(arg)); document.title = `Job ${shortId(arg)} · werk_trio`; }
    else if (name === "jobs") {
      const v = jobsView(params);
      $("main").replaceChildren(v.node);
      view = v; document.title = "Jobs · werk_trio";
    }
    else if (name === "workers" && arg) { view = simple(() => workerView(arg)); document.title = "Worker · werk_trio"; }
    else if (name === "workers") { view = simple(workersView); document.title = "Workers · werk_trio"; }
    else if (name === "queues") { view = simple(queuesView); document.title = "Queues · werk_trio"; }
    else if (name === "cron") { view = simple(cronView); document.title = "Cron · werk_trio"; }
    else if (name === "maintenance") {
      const v = maintenanceView();
      $("main").replaceChildren(v.node);
      view = v; document.title = "Maintenance · werk_trio";
    }
    else {
      $("main").replaceChildren(h("h1", { text: "Not found" }), h("p", null, "No page here. ", h("a", { href: "#/", text: "Overview" })));
      return;
    }
    S.view = view;
    const nav = S.nav;
    $("live").textContent = "loading…";
    try {
      await view.refresh();
      $("live").textContent = `updated ${fmtTime(new Date().toISOString()).slice(11)}`;
    } catch (e) {
      if (handleAuth(e)) return;
      if (nav === S.nav) $("main").replaceChildren(h("h1", { text: "Could not load this page" }), h("p", { class: "error", role: "alert", text: e.message }));
    }
    if (nav === S.nav) schedule();
  }

  async function start() {
    S.config = await get("/api/dashboard");
    chrome();
    await route();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) { stopTimer(); $("live").textContent = "paused (tab hidden)"; } else refreshNow();
  });
  window.addEventListener("hashchange", () => { if (S.config) route(); });
  document.addEventListener("DOMContentLoaded", () => {
    setupSend();
    setupLimits();
    $("logout").addEventListener("click", () => { S.token = null; showLogin("Logged out."); });
    start().catch((e) => {
      if (handleAuth(e)) return;
      $("main").replaceChildren(h("h1", { text: "The API did not answer" }), h("p", { class: "error", role: "alert", text: e.message }));
    });
  });
})();
