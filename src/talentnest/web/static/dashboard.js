// Talent Nest cluster dashboard: polls cluster/status of the node that served this page about once a
// second and draws what it says. Nodes it has seen stay on the page when they stop answering or leave
// the member list, marked as down. No libraries: the page works offline.
"use strict";

(() => {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 2500;
  const WINDOW_S = 60;
  const MAX_EVENTS = 6;
  const PLOT = { width: 600, height: 160, top: 8 };
  const PALETTE = ["#3b82f6", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16"];

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat("en-US");
  const decimal = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  const nodes = new Map(); // id -> what we know of it, and its card
  const colors = new Map(); // id -> chart colour, fixed once given
  const lagSeries = new Map(); // id -> [{t, v}], v null where unknown
  let writes = []; // [{t, v}] writes per second
  let lastSample = null; // {t, lsn} of this node's applied LSN
  let lastStatus = null;
  let lastOkAt = null; // Date of the last answer
  let failures = 0;
  let eventsKey = "";

  const now = () => performance.now() / 1000;
  const clock = (date) => date.toLocaleTimeString("en-GB", { hour12: false });
  const host = (url) => (url || "").replace(/^https?:\/\//, "");

  function colorOf(id) {
    if (!colors.has(id)) colors.set(id, PALETTE[colors.size % PALETTE.length]);
    return colors.get(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setData(node, key, value) {
    if (node.dataset[key] !== value) node.dataset[key] = value;
  }

  // --- polling ------------------------------------------------------------------------------

  async function poll() {
    const started = performance.now();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch("cluster/status", {
        cache: "no-store",
        headers: { Accept: "application/json" },
        signal: abort.signal,
      });
      if (!response.ok) throw new Error(`it answered HTTP ${response.status}`);
      onStatus(await response.json());
    } catch (error) {
      onFailure(error);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, Math.max(100, POLL_MS - (performance.now() - started)));
    }
  }

  function reasonOf(error) {
    if (error && error.name === "AbortError") return `no answer within ${TIMEOUT_MS / 1000} s`;
    if (error instanceof TypeError) return "the connection failed";
    return (error && error.message) || "unknown error";
  }

  // --- state --------------------------------------------------------------------------------

  function onStatus(status) {
    const t = now();
    failures = 0;
    lastOkAt = new Date();
    lastStatus = status;

    const listed = new Set();
    for (const info of status.nodes || []) {
      listed.add(info.id);
      const known = nodes.get(info.id) || { id: info.id };
      Object.assign(known, info, { listed: true, goneAt: null });
      if (info.self) known.seenAt = lastOkAt.getTime();
      else if (typeof info.last_seen_seconds === "number") known.seenAt = lastOkAt.getTime() - info.last_seen_seconds * 1000;
      nodes.set(info.id, known);
      colorOf(info.id);
    }
    for (const known of nodes.values()) {
      if (!listed.has(known.id) && known.listed) {
        // It left the member list (stopped, killed, removed): keep it on the page as down.
        known.listed = false;
        known.healthy = false;
        known.is_leader = false;
        known.goneAt = new Date();
      }
    }

    const lsn = status.applied_lsn;
    if (typeof lsn === "number") {
      if (lastSample && t > lastSample.t) {
        writes.push({ t, v: Math.max(0, (lsn - lastSample.lsn) / (t - lastSample.t)) });
      }
      lastSample = { t, lsn };
    }
    for (const known of nodes.values()) {
      const series = lagSeries.get(known.id) || [];
      const up = known.listed && known.healthy;
      series.push({ t, v: up && typeof known.lag === "number" ? known.lag : null });
      lagSeries.set(known.id, series);
    }
    trim(t);
    render();
  }

  function onFailure(error) {
    failures += 1;
    const t = now();
    writes.push({ t, v: null });
    lastSample = null;
    for (const series of lagSeries.values()) series.push({ t, v: null });
    trim(t);
    render(reasonOf(error));
  }

  function trim(t) {
    const oldest = t - WINDOW_S - 2;
    writes = writes.filter((p) => p.t >= oldest);
    for (const [id, series] of lagSeries) {
      const kept = series.filter((p) => p.t >= oldest);
      if (kept.length) lagSeries.set(id, kept);
      else lagSeries.delete(id);
    }
  }

  // --- drawing ------------------------------------------------------------------------------

  function render(failure) {
    renderConnection(failure);
    renderSummary();
    renderNodes(Boolean(failure));
    renderWrites();
    renderLag();
    if (!failure && lastStatus) renderEvents(lastStatus.events || []);
  }

  function selfLabel() {
    return lastStatus ? `node ${lastStatus.current_node_id} (${location.host})` : location.host;
  }

  function renderConnection(failure) {
    const conn = $("conn");
    const banner = $("banner");
    setText($("foot-node"), selfLabel());
    if (!failure) {
      setData(conn, "state", "live");
      setText($("conn-text"), `Live · via ${selfLabel()} · ${clock(lastOkAt)}`);
      banner.hidden = true;
      return;
    }
    setData(conn, "state", "down");
    setText($("conn-text"), `Reconnecting… (attempt ${failures})`);
    const since = lastOkAt ? `Showing what it last said at ${clock(lastOkAt)}. ` : "";
    setText($("banner-title"), "Connection lost.");
    setText(
      $("banner-text"),
      `This page's node, ${selfLabel()}, is not answering: ${failure}. ${since}Retrying every second (attempt ${failures}).`,
    );
    banner.hidden = false;
  }

  function renderSummary() {
    const s = lastStatus;
    if (!s) return;
    const all = [...nodes.values()];
    const healthy = all.filter((n) => n.listed && n.healthy).length;
    const leader = $("sum-leader");
    setText(leader, s.leader_id == null ? "none" : `Node ${s.leader_id}`);
    leader.classList.toggle("warn", s.leader_id == null);
    setText($("sum-term"), integer.format(s.term ?? 0));
    const healthyNode = $("sum-healthy");
    setText(healthyNode, `${healthy} of ${all.length}`);
    healthyNode.classList.toggle("warn", healthy < all.length);
    const q = s.quorum;
    const quorum = $("sum-quorum");
    setText(quorum, q ? `${q.reachable} of ${q.voters}` : "–");
    quorum.classList.toggle("warn", Boolean(q && q.reachable < q.needed));
    const latest = [...writes].reverse().find((p) => p.v !== null);
    setText($("sum-writes"), latest ? decimal.format(latest.v) : "–");
    const lags = all.filter((n) => n.listed && n.healthy && typeof n.lag === "number").map((n) => n.lag);
    setText($("sum-lag"), lags.length ? `${integer.format(Math.max(...lags))} entries` : "–");
  }

  function makeCard(id) {
    const card = el("article", "node-card");
    card.dataset.nodeId = String(id);
    const head = el("div", "card-head");
    const swatch = el("span", "swatch");
    swatch.style.background = colorOf(id);
    const title = el("div", "card-title");
    const h3 = el("h3", "", `Node ${id}`);
    const address = el("span", "address");
    title.append(h3, address);
    const role = el("span", "role");
    head.append(swatch, title, role);

    const facts = el("dl", "facts");
    const fields = {};
    for (const [key, label] of [
      ["term", "Term"],
      ["lsn", "Applied LSN"],
      ["lag", "Lag"],
      ["seen", "Last seen"],
    ]) {
      const box = el("div");
      const dd = el("dd", "", "–");
      box.append(el("dt", "", label), dd);
      facts.append(box);
      fields[key] = dd;
    }

    const foot = el("div", "card-foot");
    const health = el("span", "health");
    const forget = el("button", "forget", "Forget");
    forget.type = "button";
    forget.hidden = true;
    forget.title = "Remove this node from the page (it comes back if it is listed again)";
    forget.addEventListener("click", () => {
      nodes.delete(id);
      lagSeries.delete(id);
      card.remove();
      renderSummary();
      renderLag();
    });
    foot.append(health, forget);
    card.append(head, facts, foot);
    return { card, address, role, health, forget, fields };
  }

  function ago(seconds) {
    if (seconds < 60) return `${decimal.format(seconds)} s`;
    const minutes = Math.floor(seconds / 60);
    return minutes < 60 ? `${minutes} min ${Math.floor(seconds % 60)} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  // Seconds since the node was last heard from, by the node serving the page: its own figure while
  // it is listed, and counting on from it once it is gone.
  function lastSeen(n) {
    if (n.listed && n.self) return "now";
    if (n.listed && typeof n.last_seen_seconds === "number" && n.healthy) return ago(n.last_seen_seconds);
    if (typeof n.seenAt === "number") return ago(Math.max(0, (Date.now() - n.seenAt) / 1000));
    return "never";
  }

  function describeHealth(n) {
    if (!n.listed) return `Down · not listed since ${clock(n.goneAt)}`;
    if (!n.healthy) return typeof n.seenAt === "number" ? `Down · not answering for ${lastSeen(n)}` : "Down · not answering yet";
    if (n.self) {
      const s = lastStatus || {};
      if (s.clock && s.clock.beyond_window) return `Clock off · ${s.clock.note}`;
      const found = (s.health && s.health.problems) || {};
      const { drained, ...others } = found;
      const problems = Object.values(others);
      if (problems.length) return `Unhealthy · ${problems[0]}`;
      // An operator's drain is not a fault: the node serves, but does not stand for leader.
      if (drained) return "Drained · serves this page, does not stand for leader";
      return "Healthy · serves this page";
    }
    if (n.refuses_us) return `Refuses this node · ${n.refuses_us}`;
    return "Healthy";
  }

  function renderNodes(stale) {
    const container = $("nodes");
    container.classList.toggle("stale", stale);
    const empty = $("nodes-empty");
    if (!nodes.size) {
      empty.hidden = false;
      setText(empty, stale ? `No answer yet from ${location.host}.` : "Waiting for the first answer…");
      return;
    }
    empty.hidden = true;
    const ordered = [...nodes.values()].sort((a, b) => a.id - b.id);
    let previous = empty;
    for (const n of ordered) {
      if (!n.view) n.view = makeCard(n.id);
      const v = n.view;
      if (previous.nextSibling !== v.card) previous.after(v.card);
      previous = v.card;
      const up = n.listed && n.healthy;
      const leader = up && n.is_leader;
      setData(v.card, "state", up ? "up" : "down");
      setData(v.card, "leader", leader ? "true" : "false");
      setData(v.card, "role", up ? n.role || "follower" : "down");
      setData(v.card, "listed", n.listed ? "true" : "false");
      setText(v.role, !up ? "Down" : leader ? "★ Leader" : n.role || "follower");
      setText(v.address, host(n.address));
      setText(v.fields.term, n.term == null ? "–" : integer.format(n.term));
      setText(v.fields.lsn, n.applied_lsn == null ? "–" : integer.format(n.applied_lsn));
      setText(v.fields.lag, !up || n.lag == null ? "–" : integer.format(n.lag));
      v.fields.lag.classList.toggle("lagging", up && n.lag > 0);
      setText(v.fields.seen, lastSeen(n));
      setText(v.health, describeHealth(n));
      v.forget.hidden = n.listed;
    }
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function label(value) {
    return Number.isInteger(value) ? integer.format(value) : decimal.format(value);
  }

  function setYLabels(chart, max) {
    const spans = chart.querySelectorAll(".y-labels span");
    setText(spans[0], label(max));
    setText(spans[1], label(max / 2));
  }

  // Segments of an SVG path through the points of the last minute; a null value breaks the line.
  function pathOf(points, max, t, closed) {
    const x = (p) => ((p.t - (t - WINDOW_S)) / WINDOW_S) * PLOT.width;
    const y = (p) => PLOT.height - (p.v / max) * (PLOT.height - PLOT.top);
    let d = "";
    let segment = [];
    const flush = () => {
      if (segment.length > 1) {
        d += `M${segment.map((p) => `${x(p).toFixed(1)},${y(p).toFixed(1)}`).join("L")}`;
        if (closed) d += `L${x(segment[segment.length - 1]).toFixed(1)},${PLOT.height}L${x(segment[0]).toFixed(1)},${PLOT.height}Z`;
      }
      segment = [];
    };
    for (const p of points) {
      if (p.v === null) flush();
      else segment.push(p);
    }
    flush();
    return d;
  }

  function svgPath(className) {
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    if (className) path.setAttribute("class", className);
    return path;
  }

  // Both charts share one skeleton (axes and grid), cloned from the page's template.
  function buildPlots() {
    const template = $("plot-template");
    for (const plot of document.querySelectorAll(".plot")) {
      plot.append(template.content.cloneNode(true));
      plot.querySelector("svg").setAttribute("aria-label", plot.dataset.label);
    }
    $("chart-writes").querySelector(".series").append(svgPath("area"), svgPath("line"));
  }

  function renderWrites() {
    const chart = $("chart-writes");
    const t = now();
    const values = writes.filter((p) => p.v !== null).map((p) => p.v);
    const max = niceMax(Math.max(1, ...values));
    setYLabels(chart, max);
    chart.querySelector(".line").setAttribute("d", pathOf(writes, max, t, false));
    chart.querySelector(".area").setAttribute("d", pathOf(writes, max, t, true));
  }

  function renderLag() {
    const chart = $("chart-lag");
    const t = now();
    let values = [];
    for (const series of lagSeries.values()) values = values.concat(series.filter((p) => p.v !== null).map((p) => p.v));
    const max = niceMax(Math.max(2, ...values)); // entries are whole: keep the middle label whole too
    setYLabels(chart, max);
    const group = chart.querySelector(".series");
    const legend = $("lag-legend");
    const ids = [...lagSeries.keys()].filter((id) => nodes.has(id)).sort((a, b) => a - b);
    const paths = new Map([...group.querySelectorAll("path")].map((p) => [Number(p.dataset.nodeId), p]));
    for (const [id, path] of paths) if (!ids.includes(id)) path.remove();
    for (const id of ids) {
      let path = paths.get(id);
      if (!path) {
        path = svgPath();
        path.dataset.nodeId = String(id);
        path.setAttribute("stroke", colorOf(id));
        group.append(path);
      }
      path.setAttribute("d", pathOf(lagSeries.get(id), max, t, false));
    }
    const legendKey = ids.join(",");
    if (legend.dataset.key !== legendKey) {
      legend.dataset.key = legendKey;
      legend.replaceChildren(
        ...ids.map((id) => {
          const item = el("span", "", `Node ${id}`);
          const mark = el("i");
          mark.style.background = colorOf(id);
          item.prepend(mark);
          return item;
        }),
      );
    }
  }

  function renderEvents(events) {
    const latest = events.slice(-MAX_EVENTS).reverse();
    const key = latest.map((e) => `${e.ts}|${e.text}`).join("\n");
    if (key === eventsKey) return;
    eventsKey = key;
    const list = $("events");
    if (!latest.length) {
      list.replaceChildren(el("li", "none", "No events yet."));
      return;
    }
    list.replaceChildren(
      ...latest.map((event) => {
        const item = el("li");
        const when = el("time", "", clock(new Date(event.ts)));
        when.dateTime = event.ts;
        const kind = el("span", "kind", (event.kind || "event").replace("_", " "));
        kind.dataset.kind = event.kind || "";
        const text = el("span", "text", event.text || "");
        text.title = `${event.text || ""} (term ${event.term})`;
        item.append(when, kind, text);
        return item;
      }),
    );
  }

  buildPlots();
  poll();
})();
