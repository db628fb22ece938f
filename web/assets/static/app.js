// The status page's script: renders the page's data, refreshes it every
// couple of seconds unless paused, and shows a banner when the data could
// not be read (keeping the last data on screen). Everything is built with
// DOM calls and textContent, never from HTML strings.
"use strict";
(function () {
  const body = document.body;
  const page = body.dataset.page, api = body.dataset.api;
  const refreshMS = Number(body.dataset.refreshMs) || 2000;
  const app = document.getElementById("app");
  const banner = document.getElementById("banner");
  const updated = document.getElementById("updated");
  const pauseBtn = document.getElementById("pause");
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  const nzTime = new Intl.DateTimeFormat("en-NZ", { timeZone: "Pacific/Auckland", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false });

  // h builds an element: h("td", {class: "num"}, "text", childElement, ...).
  function h(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const k in props || {}) {
      const v = props[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "style") e.setAttribute("style", v);
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "id" || k === "href" || k === "title" || k === "colspan") e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of kids.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const dash = "–";
  function money(cents) {
    if (cents === null || cents === undefined) return dash;
    return "$" + Math.round(cents / 100).toLocaleString("en-NZ");
  }
  const pct = (v) => (v === null || v === undefined ? dash : v.toFixed(1) + "%");
  const odds = (v) => (v === null || v === undefined ? dash : v.toFixed(2));
  const ms = (v) => (v === null || v === undefined ? dash : v < 10 ? v.toFixed(1) : Math.round(v).toString());
  function dur(s) {
    if (s === null || s === undefined) return dash;
    const neg = s < 0, a = Math.abs(Math.round(s));
    const hh = Math.floor(a / 3600), mm = Math.floor((a % 3600) / 60), ss = a % 60;
    const txt = hh ? `${hh}h ${String(mm).padStart(2, "0")}m` : mm ? `${mm}m ${String(ss).padStart(2, "0")}s` : `${ss}s`;
    return neg ? "−" + txt : txt;
  }
  const clock = (t) => (t ? nzTime.format(new Date(t)) : dash);
  const badge = (text, cls) => h("span", { class: "badge " + (cls || text) }, text);

  // An alert as a list item: when, what, and (on "/") which race.
  const kindName = { steamer: "steamer", drifter: "drifter", late_money: "late money", pool_surge: "pool surge" };
  function alertItem(a, withRace) {
    return h("li", { class: "alert", "data-alert": a.id, "data-kind": a.kind },
      h("span", { class: "muted" }, clock(a.fired_at), " "), badge(kindName[a.kind] || a.kind, "alert-" + a.kind), " ",
      withRace ? h("a", { href: "/races/" + a.race_id }, a.label) : a.label);
  }
  // markerLabel is an alert's short name on a chart.
  const markerLabel = (a) => (a.runner_number ? "#" + a.runner_number + " " : "") + (kindName[a.kind] || a.kind);

  function table(head, rows, opts) {
    return h("div", { class: "scroll" }, h("table", { id: opts && opts.id },
      h("thead", {}, h("tr", {}, head.map((c) => (typeof c === "string" ? h("th", {}, c) : h("th", c[1], c[0]))))),
      h("tbody", {}, rows)));
  }

  // ---- refresh loop ----
  let paused = false, timer = null, inFlight = false;
  function showError(msg) {
    banner.hidden = !msg;
    banner.textContent = msg || "";
  }
  async function load() {
    timer = null;
    if (paused || inFlight) return;
    inFlight = true;
    const ctrl = new AbortController();
    const abort = setTimeout(() => ctrl.abort(), 8000);
    try {
      const resp = await fetch(api, { signal: ctrl.signal, headers: { Accept: "application/json" } });
      const data = await resp.json().catch(() => ({ error: resp.statusText }));
      if (!resp.ok) throw new Error(data.error || resp.statusText);
      showError(null);
      render(data);
    } catch (e) {
      showError("Could not refresh: " + (e.name === "AbortError" ? "no answer in time" : e.message) +
        (app.dataset.rendered ? " (showing the last data)" : ""));
    } finally {
      clearTimeout(abort);
      inFlight = false;
      if (!paused) timer = setTimeout(load, refreshMS);
    }
  }
  if (pauseBtn) {
    pauseBtn.addEventListener("click", () => {
      paused = !paused;
      pauseBtn.setAttribute("aria-pressed", String(paused));
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      if (paused && timer) { clearTimeout(timer); timer = null; }
      if (!paused && !timer) load();
    });
  }

  function render(data) {
    if (page === "races") renderRaces(data);
    else if (page === "race") renderRace(data);
    else if (page === "pipeline") renderPipeline(data);
    app.dataset.rendered = "true";
    app.dataset.generation = String(Number(app.dataset.generation || 0) + 1);
    if (updated) updated.textContent = "as of " + clock(data.generated_at) + " NZ";
    if (data.warnings && data.warnings.length) showError("Partly shown: " + data.warnings.join("; "));
    document.dispatchEvent(new CustomEvent("status:rendered", { detail: { page } }));
  }

  // ---- today's races ----
  const filters = { meeting: "", country: "", status: "" };
  function syncFilters() {
    const q = new URLSearchParams(location.search);
    for (const k in filters) filters[k] = q.get(k) || "";
  }
  function filterBar(data) {
    const meetings = data.meetings.map((m) => [m.id, m.name]);
    const countries = [...new Set(data.meetings.map((m) => m.country))].sort();
    const statuses = [...new Set(data.meetings.flatMap((m) => m.races.map((r) => r.status)))].sort();
    const sel = (name, label, options) => {
      const s = h("select", { id: "filter-" + name, name },
        h("option", { value: "" }, "all"), options.map(([v, t]) => h("option", { value: v, selected: filters[name] === v }, t)));
      s.addEventListener("change", () => {
        filters[name] = s.value;
        const q = new URLSearchParams();
        for (const k in filters) if (filters[k]) q.set(k, filters[k]);
        history.replaceState(null, "", q.toString() ? "?" + q : location.pathname);
        renderRaces(lastData);
      });
      return h("label", {}, label, s);
    };
    return h("div", { class: "filters" },
      sel("meeting", "Meeting", meetings), sel("country", "Country", countries.map((c) => [c, c])),
      sel("status", "Status", statuses.map((s) => [s, s])));
  }
  let lastData = null, filterKey = "";
  const racesView = { head: h("div"), alerts: h("section", { id: "day-alerts", class: "card" }), filters: h("div"),
    list: h("div", { id: "race-list" }) };
  function renderRaces(data) {
    lastData = data;
    const t = data.totals;
    racesView.head.replaceChildren(
      h("h1", {}, "Today's races ", h("span", { class: "muted" }, data.day)),
      h("div", { class: "totals" },
        h("span", {}, `${t.races} races`), h("span", {}, `${t.tracked} polled`),
        t.failing ? h("span", { class: "badge bad" }, `${t.failing} failing`) : null,
        t.poisoned ? h("span", { class: "badge bad" }, `${t.poisoned} poisoned`) : null,
        data.scheduling ? null : h("span", { class: "muted" }, "this process is not scheduling: cadence and next poll are shown where it is")));
    // The filters are rebuilt only when their choices change, so a refresh
    // never closes a select that is open.
    const key = JSON.stringify([data.meetings.map((m) => [m.id, m.name, m.country]),
      [...new Set(data.meetings.flatMap((m) => m.races.map((r) => r.status)))].sort()]);
    if (key !== filterKey) {
      filterKey = key;
      racesView.filters.replaceChildren(filterBar(data));
    }
    if (racesView.head.parentNode !== app) app.replaceChildren(racesView.head, racesView.alerts, racesView.filters, racesView.list);
    const alerts = data.alerts || [];
    racesView.alerts.replaceChildren(h("h2", {}, "Today's alerts ", h("span", { class: "muted" }, alerts.length ? `${alerts.length} latest` : "")),
      alerts.length ? h("ul", { class: "alerts" }, alerts.map((a) => alertItem(a, true)))
        : h("p", { class: "muted" }, "No late money moves yet today."));
    const kids = [];
    let shown = 0;
    for (const m of data.meetings) {
      if (filters.meeting && m.id !== filters.meeting) continue;
      if (filters.country && m.country !== filters.country) continue;
      const races = m.races.filter((r) => !filters.status || r.status === filters.status);
      if (!races.length) continue;
      shown += races.length;
      const rows = races.map((r) => {
        const lp = r.last_poll;
        const outcome = lp ? (lp.outcome === "success" || lp.outcome === "stored" ? badge(lp.outcome, "ok") : badge(lp.outcome, "bad")) : dash;
        return h("tr", { class: "race-row" + (r.failing || r.poisoned ? " failing" : ""), "data-race": r.id },
          h("td", { class: "num" }, r.number),
          h("td", {}, h("a", { href: "/races/" + r.id }, r.name),
            r.poisoned ? [" ", badge(`poisoned ${r.poisoned}`, "bad")] : null,
            lp && lp.error ? h("div", { class: "muted err", title: lp.error }, lp.error.slice(0, 90)) : null),
          h("td", {}, badge(r.status)),
          h("td", { class: "num" }, r.start_nz),
          h("td", { class: "num" }, dur(r.until_start_s)),
          h("td", { class: "num wide" }, r.tracked ? dur(r.cadence_s) : dash),
          h("td", { class: "num" }, lp ? dur(Math.max(0, lp.age_s)) + " ago" : dash),
          h("td", {}, outcome),
          h("td", { class: "num wide" }, lp && lp.total_ms !== undefined ? ms(lp.total_ms) : dash),
          h("td", { class: "num wide" }, r.in_flight ? "in flight" : r.next_poll_in_s !== undefined ? (r.next_poll_in_s <= 0 ? "due" : "in " + dur(r.next_poll_in_s)) : dash));
      });
      kids.push(h("section", { class: "meeting", "data-meeting": m.id },
        h("h2", {}, m.name, " ", h("span", { class: "muted" }, `${m.country} · ${m.race_type}`)),
        table(["#", "Race", "Status", ["Start", { class: "num" }], ["To start", { class: "num" }],
          ["Cadence", { class: "num wide" }], ["Last poll", { class: "num" }], "Outcome",
          ["ms", { class: "num wide" }], ["Next poll", { class: "num wide" }]], rows)));
    }
    if (!shown) kids.push(h("p", { class: "muted" }, data.meetings.length ? "No race matches the filters." : "No races today yet."));
    racesView.list.replaceChildren(...kids);
  }

  // ---- one race ----
  const bucketTicks = [60, 55, 50, 45, 40, 35, 30, 25, 20, 15, 10, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5];
  function renderRace(data) {
    const r = data.race, sched = data.schedule;
    const runners = data.runners;
    const color = (i) => palette[i % palette.length];
    const kids = [
      h("p", { class: "muted" }, h("a", { href: "/" }, "Today's races"), " › ", r.meeting_name, ` (${r.country})`),
      h("h1", {}, `R${r.number} ${r.name} `, badge(r.status), data.poisoned ? [" ", badge(`poisoned ${data.poisoned}`, "bad")] : null),
      h("dl", { class: "facts" },
        h("dt", {}, "Start"), h("dd", {}, `${r.start_nz} NZ · `, r.until_start_s >= 0 ? "in " + dur(r.until_start_s) : dur(-r.until_start_s) + " ago"),
        r.distance ? [h("dt", {}, "Distance"), h("dd", {}, `${r.distance} m`)] : null,
        r.track_condition ? [h("dt", {}, "Track"), h("dd", {}, r.track_condition + (r.weather ? " · " + r.weather : ""))] : null,
        h("dt", {}, "Polling"), h("dd", {}, sched ? `every ${dur(sched.cadence_s)} · ${sched.polls} polls · ` +
          (sched.in_flight ? "poll in flight" : "next " + (sched.next_poll ? clock(sched.next_poll) + " NZ" : dash)) +
          (sched.lost ? " · last poll lost" : "") : "not tracked by this process")),
    ];
    const alerts = data.alerts || [];
    kids.push(h("section", { id: "alerts", class: "card", hidden: !alerts.length },
      h("h2", {}, "Alerts"), h("ul", { class: "alerts" }, alerts.map((a) => alertItem(a, false)))));

    kids.push(h("h2", {}, "Runners"), table(["#", "Runner", ["Fixed W", { class: "num" }], ["Fixed P", { class: "num wide" }],
      ["Pool W", { class: "num" }], ["Pool P", { class: "num wide" }], ["Hold", { class: "num" }],
      ["Win share", { class: "num wide" }], ["Place share", { class: "num wide" }], ["Win $", { class: "num" }], ["Place $", { class: "num wide" }]],
    runners.map((u, i) => h("tr", { class: u.scratched ? "muted" : "" },
      h("td", { class: "num" }, h("span", { class: "legend" }, h("span", { style: `--c:${color(i)}` }, String(u.number)))),
      h("td", {}, u.name, u.scratched ? " (scr)" : "", u.barrier ? h("span", { class: "muted" }, ` (${u.barrier})`) : null),
      h("td", { class: "num" }, odds(u.fixed_win)), h("td", { class: "num wide" }, odds(u.fixed_place)),
      h("td", { class: "num" }, odds(u.pool_win)), h("td", { class: "num wide" }, odds(u.pool_place)),
      h("td", { class: "num" }, pct(u.hold_pct)), h("td", { class: "num wide" }, pct(u.win_share_pct)),
      h("td", { class: "num wide" }, pct(u.place_share_pct)), h("td", { class: "num" }, money(u.win_cents)),
      h("td", { class: "num wide" }, money(u.place_cents)))), { id: "runners" }));

    const holdHost = h("div", { id: "hold-chart", "data-polls": data.hold.length });
    const incHost = h("div", { id: "increments-chart", "data-buckets": data.increments.length });
    const poolHost = h("div", { id: "pools-chart" });
    const legend = h("div", { class: "legend" }, runners.map((u, i) => h("span", { style: `--c:${color(i)}` }, `${u.number} ${u.name}`)));
    kids.push(h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", {}, "Hold % per runner, by minutes to start"), holdHost, legend),
      h("section", { class: "card" }, h("h2", {}, "Win money per timing bucket"), incHost,
        h("p", { class: "muted" }, "Each bar is the money that came in within the bucket; a tall late segment is a plunge."))));
    kids.push(h("section", { class: "card" }, h("h2", {}, "Pools"), poolHost));

    if (data.results) {
      const res = data.results;
      kids.push(h("h2", {}, "Results ", badge(res.status || "interim"),
        res.photo_finish ? [" ", badge("photo", "bad")] : null, res.stewards_inquiry ? [" ", badge("inquiry", "bad")] : null,
        res.protest_lodged ? [" ", badge("protest", "bad")] : null),
      h("div", { class: "grid2" },
        table(["Pos", "#", "Runner", "Margin"], res.placings.map((p) => h("tr", {}, h("td", {}, p.position), h("td", {}, p.runner_number), h("td", {}, p.name), h("td", {}, p.margin || "")))),
        table(["Product", "Runners", ["Dividend", { class: "num" }], ["Pool", { class: "num wide" }]],
          res.dividends.map((d) => h("tr", {}, h("td", {}, d.product, d.status && d.status !== "Final" ? ` (${d.status})` : ""),
            h("td", {}, d.runners.join("-")), h("td", { class: "num" }, "$" + d.dividend.toFixed(2)),
            h("td", { class: "num wide" }, "$" + Math.round(d.pool_size).toLocaleString("en-NZ")))))));
    }

    kids.push(h("h2", {}, "Last polls"), data.polls.length ? table(["Arrived", "Outcome", ["Fetch", { class: "num" }],
      ["Transform", { class: "num wide" }], ["Write", { class: "num" }], ["Detect", { class: "num wide" }], ["Queued", { class: "num wide" }],
      ["Total ms", { class: "num" }], "Error"],
    data.polls.map((p) => h("tr", { class: p.status === "success" ? "" : "failing" },
      h("td", {}, clock(p.at)), h("td", {}, badge(p.status, p.status === "success" ? "ok" : "bad")),
      h("td", { class: "num" }, ms(p.fetch_ms)), h("td", { class: "num wide" }, ms(p.transform_ms)),
      h("td", { class: "num" }, ms(p.write_ms)), h("td", { class: "num wide" }, ms(p.detect_ms)), h("td", { class: "num wide" }, ms(p.queue_ms)),
      h("td", { class: "num" }, ms(p.total_ms)),
      h("td", { class: "wrap" }, p.error ? `${p.error.stage} ${p.error.kind}: ${p.error.message}` : ""))), { id: "polls" })
      : h("p", { class: "muted" }, "No poll results seen by this process yet."));
    kids.push(h("h2", {}, "Stored polls"), table(["Observed", "Race status", ["Quality", { class: "num" }], ["Written", { class: "wide" }]],
      data.stored.map((p) => h("tr", {}, h("td", {}, clock(p.observed_at)), h("td", {}, p.race_status),
        h("td", { class: "num" }, p.quality_score), h("td", { class: "wide" }, clock(p.written_at))))));
    app.replaceChildren(...kids);

    // Charts, once their hosts are in the document.
    if (data.hold.length) {
      let lo = Math.min(0, ...data.hold.map((p) => p.minutes_to_start));
      let hi = Math.max(...data.hold.map((p) => p.minutes_to_start));
      hi = Math.max(hi, lo + 1);
      const markers = alerts.filter((a) => typeof a.minutes_to_start === "number")
        .map((a) => ({ x: a.minutes_to_start, label: markerLabel(a), title: a.label }));
      Charts.lines(holdHost, {
        label: "hold percentage per runner", xFrom: hi, xTo: lo, yFmt: (v) => v.toFixed(0) + "%", xTitle: "minutes to start",
        xTicks: bucketTicks.filter((b) => b <= hi && b >= lo).filter((b, i, a) => a.length < 14 || b % 5 === 0 || b === a[a.length - 1]).map((b) => ({ x: b, label: String(b) })),
        markers,
        series: runners.map((u, i) => ({ name: `${u.number} ${u.name}`, color: color(i), points: data.hold.map((p) => [p.minutes_to_start, p.hold[i]]) })),
        pointTitle: (se, p) => `${se.name}: ${p[1].toFixed(1)}% at ${p[0].toFixed(1)} min`,
      });
    } else holdHost.replaceChildren(h("p", { class: "muted" }, "No money flow stored yet."));
    if (data.increments.length) {
      Charts.bars(incHost, {
        label: "incremental win amounts per bucket", clipFirst: true, xTitle: "bucket (minutes to start)",
        markers: alerts.map((a) => ({ category: String(a.bucket), label: markerLabel(a), title: a.label })),
        yFmt: (v) => money(v), categories: data.increments.map((b) => String(b.bucket)),
        series: runners.map((u, i) => ({ name: `${u.number} ${u.name}`, color: color(i), values: data.increments.map((b) => b.win[i]) })),
      });
    } else incHost.replaceChildren(h("p", { class: "muted" }, "No money flow stored yet."));
    const pl = data.pools;
    if (pl) {
      Charts.hbars(poolHost, {
        label: "pool totals", fmt: money,
        items: [["Win", pl.win], ["Place", pl.place], ["Quinella", pl.quinella], ["Trifecta", pl.trifecta], ["Exacta", pl.exacta],
          ["First 4", pl.first4], ["All pools", pl.total]].map(([label, value], i) => ({ label, value, color: palette[i] })),
      });
    } else poolHost.replaceChildren(h("p", { class: "muted" }, "No pools stored yet."));
  }

  // ---- pipeline ----
  function renderPipeline(data) {
    const fig = (dt, dd) => [h("dt", {}, dt), h("dd", {}, dd)];
    const hopBox = (hp) => {
      const f = hp.figures;
      const backlogged = hp.oldest_age_s !== undefined && hp.oldest_age_s > 5;
      return h("div", { class: "hop" + (backlogged ? " backlogged" : ""), "data-hop": hp.stage },
        h("h3", {}, hp.stage, " ", h("span", { class: "muted" }, hp.topic ? "← " + hp.topic : "(same handler)")),
        h("dl", {},
          fig("backlog", hp.backlog !== undefined ? String(hp.backlog) : dash),
          fig("oldest waiting", hp.oldest_age_s !== undefined ? dur(hp.oldest_age_s) : dash),
          fig("per minute", f.per_minute.toFixed(1)),
          hp.stage !== "result" && hp.stage !== "notify" ? [fig("p50 ms", ms(f.p50_ms)), fig("p95 ms", ms(f.p95_ms))] : null));
    };
    const sched = data.scheduler;
    const flow = [h("div", { class: "hop", "data-hop": "poll" }, h("h3", {}, "poll"),
      h("dl", {}, fig("races tracked", sched ? String(sched.tracked) : dash), fig("in flight", sched ? String(sched.in_flight) : dash),
        fig("leader", data.leader === undefined ? "unknown" : data.leader ? "this process" : "another process")))];
    // The notifier consumes the alerts beside the flow, not after it.
    for (const hp of data.hops) flow.push(h("span", { class: "arrow", "aria-hidden": "true" }, hp.stage === "notify" ? "⇢" : "→"), hopBox(hp));
    const kids = [h("h1", {}, "Pipeline"),
      h("p", { class: "muted" }, `Latency (successful polls) and throughput over the last ${dur(data.span_s)}; backlog now.` +
        (data.queues_measured ? "" : " This backend does not report backlogs.")),
      h("div", { class: "flow", id: "flow" }, flow)];
    const t = data.total, q = data.queue, oc = data.outcomes || {};
    kids.push(h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", {}, "Whole poll"), h("dl", { class: "facts" },
        fig("end to end", `p50 ${ms(t.p50_ms)} ms · p95 ${ms(t.p95_ms)} ms (${t.samples} polls)`),
        fig("queued between stages", `p50 ${ms(q.p50_ms)} ms · p95 ${ms(q.p95_ms)} ms`),
        fig("outcomes", Object.keys(oc).length ? Object.keys(oc).sort().map((k) => `${k} ${oc[k]}`).join(" · ") : "no polls yet"))),
      h("section", { class: "card" }, h("h2", {}, "Database"), h("dl", { class: "facts" },
        fig("round trip", ms(data.database.round_trip_ms) + " ms"),
        data.database.pool_known ? [fig("connections", `${data.database.acquired} in use · ${data.database.idle} idle · ${data.database.total} open of ${data.database.max}`),
          fig("waits for a connection", `${data.database.waits} (${ms(data.database.wait_time_ms)} ms)`)] : fig("pool", "not reported")))));
    const api = data.api;
    kids.push(h("div", { class: "grid2" },
      h("section", { class: "card", id: "api" }, h("h2", {}, "NZ TAB API responses"), api && Object.keys(api).length
        ? table(["Class", ["Attempts", { class: "num" }]], Object.keys(api).sort().map((k) => h("tr", {}, h("td", {}, k.endsWith("xx") && k !== "2xx" ? badge(k, "bad") : k), h("td", { class: "num" }, api[k]))))
        : h("p", { class: "muted" }, api ? "No requests yet." : "Not reported.")),
      poisonCard(data.poison)));
    if (data.queues_measured) {
      const rows = [];
      for (const hp of data.hops) for (const s of hp.shards || []) {
        rows.push(h("tr", {}, h("td", {}, hp.topic), h("td", { class: "num" }, s.shard < 0 ? dash : s.shard), h("td", { class: "num" }, s.backlog), h("td", { class: "num" }, dur(s.oldest_age_s))));
      }
      kids.push(h("section", { class: "card wide" }, h("h2", {}, "Backlog by shard"), table(["Topic", ["Shard", { class: "num" }], ["Backlog", { class: "num" }], ["Oldest", { class: "num" }]], rows)));
    }
    app.replaceChildren(...kids);
  }
  function poisonCard(p) {
    if (!p) return h("section", { class: "card", id: "poison" }, h("h2", {}, "Poison queue"), h("p", { class: "muted" }, "Not kept by this backend."));
    return h("section", { class: "card", id: "poison" },
      h("h2", {}, "Poison queue ", p.count ? badge(String(p.count), "bad") : badge("empty", "ok")),
      p.count ? h("p", { class: "muted" }, `oldest poisoned ${dur(p.oldest_age_s)} ago · requeue with raceflow poison requeue`) : null,
      p.recent.length ? table(["When", "Race", "Stage", "Kind", ""], p.recent.map((e) => h("tr", {},
        h("td", {}, clock(e.poisoned_at)), h("td", {}, e.race_id ? h("a", { href: "/races/" + e.race_id }, e.race_id.slice(0, 8)) : dash),
        h("td", {}, e.stage), h("td", {}, e.kind), h("td", {}, h("a", { href: "/poison/" + e.id }, "details"))))) : null);
  }

  // First paint from the data inlined in the page, then refresh.
  syncFilters();
  const initial = document.getElementById("initial");
  if (initial) {
    try { render(JSON.parse(initial.textContent)); } catch (e) { showError("Could not show the page: " + e.message); }
  }
  const loading = document.getElementById("loading");
  if (loading && !initial) loading.textContent = "Waiting for data…";
  if (api) timer = setTimeout(load, initial ? refreshMS : 0);
})();
