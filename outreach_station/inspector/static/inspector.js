// The inspector page: gathers every scope and section into one report (see
// the docstring of server.py for its structure), hashes it, posts it to
// /report and shows it as tables, with the checks station answers the post
// with (the same as `station check`). Each part is guarded so that one
// failure becomes an error string in the report instead of a broken page.
"use strict";

(async function () {
  const S = self.station;
  const started = performance.now();
  // Each scope measures every installed family (about 220 with Noto), and the
  // five scopes share the browser's one font service: on a loaded 2-core
  // machine, headed, the shared worker needed more than 8 s. Within the
  // 30 s the server waits for the whole report.
  const SCOPE_TIMEOUT_MS = 20000;
  const ICE_TIMEOUT_MS = 3000;

  // --- helpers ----------------------------------------------------------------

  // The page's texts in station's language: station writes them into the page
  // as a JSON data block (see server.py); without one, the English below.
  const TEXTS = (() => {
    try {
      const block = document.getElementById("station-texts");
      return block ? JSON.parse(block.textContent) : {};
    } catch (_) {
      return {};
    }
  })();

  // `text` translated, its {fields} filled in.
  function t(text, fields) {
    const own = Object.prototype.hasOwnProperty.call(TEXTS, text) && typeof TEXTS[text] === "string";
    return (own && TEXTS[text] ? TEXTS[text] : text).replace(/\{(\w+)\}/g, (whole, key) =>
      fields && Object.prototype.hasOwnProperty.call(fields, key) ? String(fields[key]) : whole);
  }

  // Reads each field on its own, so one missing API costs one value, not the section.
  function gather(readers) {
    const out = {};
    const problems = [];
    for (const [key, read] of Object.entries(readers)) {
      try {
        const value = read();
        out[key] = value === undefined ? null : value;
      } catch (err) {
        out[key] = null;
        problems.push(key + ": " + S.errorText(err));
      }
    }
    out.error = problems.length ? problems.join("; ") : null;
    return out;
  }

  function mq(query) {
    return matchMedia(query).matches;
  }

  // Largest n in [lo, hi] for which pred holds, pred being true up to some point.
  function largest(pred, lo, hi) {
    if (!pred(lo)) return null;
    while (lo < hi) {
      const mid = Math.floor((lo + hi + 1) / 2);
      if (pred(mid)) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  function pick(feature, values) {
    const hit = values.find((v) => mq("(" + feature + ": " + v + ")"));
    return hit === undefined ? null : hit;
  }

  function unwrap(data) {
    if (data && data.ok) return data.scope;
    throw new Error((data && data.error) || "the scope sent no report");
  }

  // --- scopes -----------------------------------------------------------------

  function iframeScope() {
    return new Promise((resolve, reject) => {
      const frame = document.createElement("iframe");
      const onMessage = (event) => {
        if (event.origin !== location.origin || event.source !== frame.contentWindow) return;
        if (!event.data || event.data.kind !== "station-scope") return;
        removeEventListener("message", onMessage);
        try { resolve(unwrap(event.data)); } catch (err) { reject(err); }
      };
      addEventListener("message", onMessage);
      frame.src = "/frame";
      frame.title = "iframe scope probe";
      frame.hidden = true;
      document.body.appendChild(frame);
    });
  }

  // The worker's device signals, kept for report.device (set by dedicatedWorkerScope).
  let workerDevice = null;

  function dedicatedWorkerScope() {
    return new Promise((resolve, reject) => {
      if (typeof Worker !== "function") throw new Error("Worker is not available");
      const worker = new Worker("/worker.js");
      worker.onmessage = (event) => {
        worker.terminate();
        workerDevice = (event.data && event.data.device) || null;
        try { resolve(unwrap(event.data)); } catch (err) { reject(err); }
      };
      worker.onerror = (event) => {
        event.preventDefault();
        worker.terminate();
        reject(new Error("dedicated worker failed: " + (event.message || "error")));
      };
    });
  }

  function sharedWorkerScope() {
    return new Promise((resolve, reject) => {
      if (typeof SharedWorker !== "function") throw new Error("SharedWorker is not available");
      const worker = new SharedWorker("/shared-worker.js", { name: "station-inspector" });
      worker.onerror = () => reject(new Error("shared worker failed"));
      worker.port.onmessage = (event) => {
        worker.port.close();
        try { resolve(unwrap(event.data)); } catch (err) { reject(err); }
      };
      worker.port.start();
    });
  }

  function activated(registration) {
    if (registration.active) return Promise.resolve(registration.active);
    const worker = registration.installing || registration.waiting;
    return new Promise((resolve, reject) => {
      worker.addEventListener("statechange", () => {
        if (worker.state === "activated") resolve(worker);
        if (worker.state === "redundant") reject(new Error("service worker became redundant"));
      });
    });
  }

  async function serviceWorkerScope() {
    if (!("serviceWorker" in navigator)) throw new Error("navigator.serviceWorker is not available");
    const registration = await navigator.serviceWorker.register("/sw/service-worker.js",
      { scope: "/sw/", updateViaCache: "none" });
    try {
      const worker = await activated(registration);
      const data = await new Promise((resolve) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = (event) => resolve(event.data);
        worker.postMessage({ kind: "collect" }, [channel.port2]);
      });
      return unwrap(data);
    } finally {
      // The persona's profile keeps no trace of the inspector's worker.
      registration.unregister().catch(() => {});
    }
  }

  async function allScopes() {
    const tasks = {
      main: () => S.collectScope(),
      iframe: iframeScope,
      dedicated_worker: dedicatedWorkerScope,
      shared_worker: sharedWorkerScope,
      service_worker: serviceWorkerScope,
    };
    const names = S.SCOPE_NAMES;
    const results = await Promise.all(names.map((name) =>
      S.withTimeout(Promise.resolve().then(tasks[name]), SCOPE_TIMEOUT_MS, name)
        .catch((err) => S.emptyScope(S.errorText(err)))));
    const scopes = {};
    names.forEach((name, i) => { scopes[name] = results[i]; });
    return scopes;
  }

  // --- main-frame sections ----------------------------------------------------

  function screenSection() {
    return gather({
      width: () => screen.width,
      height: () => screen.height,
      avail_width: () => screen.availWidth,
      avail_height: () => screen.availHeight,
      color_depth: () => screen.colorDepth,
      pixel_depth: () => screen.pixelDepth,
      device_pixel_ratio: () => devicePixelRatio,
      inner_width: () => innerWidth,
      inner_height: () => innerHeight,
      outer_width: () => outerWidth,
      outer_height: () => outerHeight,
    });
  }

  function mediaSection() {
    return gather({
      device_width: () => largest((n) => mq("(min-device-width: " + n + "px)"), 0, 100000),
      device_height: () => largest((n) => mq("(min-device-height: " + n + "px)"), 0, 100000),
      // In hundredths of a dppx: fine enough for every real pixel ratio.
      resolution_dppx: () => {
        const k = largest((n) => mq("(min-resolution: " + n / 100 + "dppx)"), 0, 10000);
        return k === null ? null : k / 100;
      },
      pointer: () => pick("pointer", ["fine", "coarse", "none"]),
      any_pointer: () => pick("any-pointer", ["fine", "coarse", "none"]),
      hover: () => pick("hover", ["hover", "none"]),
      any_hover: () => pick("any-hover", ["hover", "none"]),
      prefers_color_scheme: () => pick("prefers-color-scheme", ["dark", "light"]),
      prefers_reduced_motion: () => pick("prefers-reduced-motion", ["reduce", "no-preference"]),
      color_gamut: () => pick("color-gamut", ["rec2020", "p3", "srgb"]),
    });
  }

  function webgl() {
    const canvas = document.createElement("canvas");
    const gl = canvas.getContext("webgl") || canvas.getContext("experimental-webgl");
    if (!gl) return null;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    return {
      vendor: gl.getParameter(gl.VENDOR),
      renderer: gl.getParameter(gl.RENDERER),
      unmasked_vendor: info ? gl.getParameter(info.UNMASKED_VENDOR_WEBGL) : null,
      unmasked_renderer: info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : null,
    };
  }

  async function canvasHash() {
    const canvas = document.createElement("canvas");
    canvas.width = 280;
    canvas.height = 60;
    const ctx = canvas.getContext("2d");
    ctx.textBaseline = "top";
    ctx.font = "16px sans-serif";
    ctx.fillStyle = "#f60";
    ctx.fillRect(120, 1, 62, 20);
    ctx.fillStyle = "#069";
    ctx.fillText("station inspector, Åå 0.1 \u{1F310}", 2, 15);
    ctx.fillStyle = "rgba(102, 204, 0, 0.7)";
    ctx.beginPath();
    ctx.arc(240, 30, 20, 0, Math.PI * 2);
    ctx.fill();
    return await S.sha256Hex(canvas.toDataURL());
  }

  // A console message's arguments are only serialized when a protocol client
  // has Runtime enabled (DevTools open, or a driver): then the getter runs.
  function consoleTell() {
    let touched = false;
    const probe = new Error("station probe");
    Object.defineProperty(probe, "stack", { configurable: true, get() { touched = true; return ""; } });
    console.debug(probe);
    return touched;
  }

  async function miscSection() {
    let gl = null;
    const out = gather({
      max_touch_points: () => navigator.maxTouchPoints,
      plugins_length: () => navigator.plugins.length,
      window_chrome: () => typeof window.chrome === "object" && window.chrome !== null,
      notification_permission: () =>
        typeof Notification === "function" ? Notification.permission : null,
      cookie_enabled: () => navigator.cookieEnabled,
      do_not_track: () => navigator.doNotTrack,
      pdf_viewer_enabled: () => navigator.pdfViewerEnabled,
      webgl_vendor: () => { gl = webgl(); return gl && gl.vendor; },
      webgl_renderer: () => gl && gl.renderer,
      webgl_unmasked_vendor: () => gl && gl.unmasked_vendor,
      webgl_unmasked_renderer: () => gl && gl.unmasked_renderer,
      canvas_hash: () => null,
      // Automation tells: what a protocol client or a driver leaves behind.
      mime_types_length: () => navigator.mimeTypes.length,
      chrome_runtime: () => typeof (window.chrome || {}).runtime,
      chrome_app: () => typeof (window.chrome || {}).app,
      chrome_load_times: () => typeof (window.chrome || {}).loadTimes,
      chrome_csi: () => typeof (window.chrome || {}).csi,
      automation_globals: () => Object.getOwnPropertyNames(window)
        .filter((name) => /^(\$?cdc_|__webdriver|__selenium|__driver|__playwright|__pw_|_phantom|callPhantom|domAutomation)/.test(name))
        .sort(),
      console_serialized: () => consoleTell(),
      notification_query: () => null,
    });
    try {
      const status = await S.withTimeout(
        navigator.permissions.query({ name: "notifications" }), 3000, "permissions.query");
      out.notification_query = status.state;
    } catch (err) {
      out.error = (out.error ? out.error + "; " : "") + "notification_query: " + S.errorText(err);
    }
    try {
      out.canvas_hash = await canvasHash();
    } catch (err) {
      out.error = (out.error ? out.error + "; " : "") + "canvas_hash: " + S.errorText(err);
    }
    return out;
  }

  // Names only: a value of a cookie or storage entry never enters the report.
  async function storageSection() {
    const out = gather({
      cookies: () => (document.cookie ? document.cookie.split(";") : [])
        .map((part) => part.trim())
        .filter((part) => part)
        // A cookie set without "=" shows as its bare value: report it nameless.
        .map((part) => (part.includes("=") && part.split("=")[0].trim()) || "(unnamed)")
        .sort(),
      local_storage: () => Array.from({ length: localStorage.length }, (_, i) => localStorage.key(i)).sort(),
      session_storage: () =>
        Array.from({ length: sessionStorage.length }, (_, i) => sessionStorage.key(i)).sort(),
      indexeddb: () => null,
      service_workers: () => null,
    });
    const problems = out.error ? [out.error] : [];
    try {
      const dbs = await S.withTimeout(indexedDB.databases(), 3000, "indexedDB.databases");
      out.indexeddb = dbs.map((db) => db.name).sort();
    } catch (err) {
      problems.push("indexeddb: " + S.errorText(err));
    }
    try {
      const regs = await S.withTimeout(navigator.serviceWorker.getRegistrations(), 3000,
        "getRegistrations");
      out.service_workers = regs.length;
    } catch (err) {
      problems.push("service_workers: " + S.errorText(err));
    }
    out.error = problems.length ? problems.join("; ") : null;
    return out;
  }

  function parseCandidate(candidate) {
    // "candidate:<foundation> <component> <protocol> <priority> <address> <port> typ <type> ..."
    const parts = (candidate.candidate || "").split(" ");
    return {
      type: candidate.type || parts[7] || null,
      address: candidate.address || parts[4] || null,
      protocol: (candidate.protocol || parts[2] || "").toLowerCase() || null,
    };
  }

  async function webrtcSection(stunParam) {
    const out = { candidates: [], stun: null, error: null };
    if (stunParam !== null) {
      if (/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/.test(stunParam)) {
        out.stun = stunParam;
      } else {
        out.error = "ignored a malformed stun parameter (expected host:port)";
      }
    }
    if (typeof RTCPeerConnection !== "function") {
      out.error = "RTCPeerConnection is not available";
      return out;
    }
    let pc = null;
    try {
      pc = new RTCPeerConnection({ iceServers: out.stun ? [{ urls: "stun:" + out.stun }] : [] });
      const gathered = new Promise((resolve) => {
        pc.onicecandidate = (event) => {
          if (!event.candidate) resolve();
          else if (event.candidate.candidate) out.candidates.push(parseCandidate(event.candidate));
        };
        pc.onicegatheringstatechange = () => {
          if (pc.iceGatheringState === "complete") resolve();
        };
        setTimeout(resolve, ICE_TIMEOUT_MS);
      });
      pc.createDataChannel("station");
      await pc.setLocalDescription(await pc.createOffer());
      await gathered;
    } catch (err) {
      out.error = S.errorText(err);
    } finally {
      if (pc) pc.close();
    }
    return out;
  }

  async function headersSection() {
    try {
      return await S.fetchHeaders();
    } catch (err) {
      return { error: S.errorText(err) };
    }
  }

  // --- rendering (textContent only: no value is ever parsed as HTML) -----------

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function show(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function flatten(value, prefix, out) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const key of Object.keys(value)) flatten(value[key], prefix ? prefix + "." + key : key, out);
    } else {
      out[prefix] = value;
    }
    return out;
  }

  function scopeTable(scopes) {
    const names = S.SCOPE_NAMES;
    const flat = names.map((n) => flatten(scopes[n] || {}, "", {}));
    const keys = [];
    for (const f of flat) for (const k of Object.keys(f)) if (!keys.includes(k)) keys.push(k);
    const table = el("table");
    table.appendChild(el("caption", t("Per scope (a row is marked when scopes disagree)")));
    const head = el("tr");
    head.appendChild(el("th", t("Value")));
    for (const n of names) head.appendChild(el("th", n.replace("_", " ")));
    head.appendChild(el("th", t("Scopes agree?")));
    for (const th of head.children) th.scope = "col";
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    for (const key of keys) {
      const cells = flat.map((f) => show(f[key]));
      // Errors and values a scope does not have (null) are not disagreements.
      const present = flat.map((f) => f[key]).filter((v) => v !== null && v !== undefined)
        .map((v) => JSON.stringify(v));
      const differs = !/(^|\.)(http_)?error$/.test(key) && new Set(present).size > 1;
      const row = el("tr", undefined, differs ? "disagree" : "");
      const th = el("th", key);
      th.scope = "row";
      row.appendChild(th);
      cells.forEach((text, i) => row.appendChild(el("td", text, flat[i].error ? "failed" : "")));
      row.appendChild(el("td", differs ? t("NO, differs") : t("yes")));
      body.appendChild(row);
    }
    return table;
  }

  function keyValueTable(caption, obj) {
    const table = el("table");
    table.appendChild(el("caption", caption));
    const body = table.appendChild(el("tbody"));
    for (const [key, value] of Object.entries(flatten(obj || {}, "", {}))) {
      const row = body.appendChild(el("tr"));
      const th = row.appendChild(el("th", key));
      th.scope = "row";
      row.appendChild(el("td", show(value)));
    }
    return table;
  }

  function candidatesTable(webrtc) {
    const table = el("table");
    table.appendChild(el("caption", t("WebRTC ICE candidates") +
      (webrtc.stun ? t(" (STUN {server})", { server: webrtc.stun }) : t(" (no STUN server)"))));
    const head = el("tr");
    for (const h of ["type", "protocol", "address"]) {
      const th = head.appendChild(el("th", h));
      th.scope = "col";
    }
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    for (const c of webrtc.candidates) {
      const row = body.appendChild(el("tr"));
      for (const k of ["type", "protocol", "address"]) row.appendChild(el("td", show(c[k])));
    }
    if (!webrtc.candidates.length) {
      const row = body.appendChild(el("tr"));
      const td = row.appendChild(el("td", t("no candidates")));
      td.colSpan = 3;
    }
    if (webrtc.error) table.appendChild(el("caption", t("Error: {error}", { error: webrtc.error })));
    return table;
  }

  function render(report) {
    const root = document.getElementById("results");
    root.replaceChildren();
    const section = (title, node) => {
      root.appendChild(el("h2", t(title)));
      root.appendChild(node);
    };
    section("Browser identity in every scope", scopeTable(report.scopes));
    section("HTTP request headers", keyValueTable(t("Headers a website receives"), report.headers));
    section("Screen and window", keyValueTable(t("Screen and window"), report.screen));
    section("CSS media queries", keyValueTable(t("Media features"), report.media));
    section("WebRTC", candidatesTable(report.webrtc));
    section("Stored data (names only)", keyValueTable(t("Cookies and storage"), report.storage));
    section("Other signals", keyValueTable(t("Other signals"), report.misc));
    section("Fingerprint hash", keyValueTable(t("SHA-256 over the stable values"),
      { hash: report.hash }));
    section("Device hash", keyValueTable(t(
      "SHA-256 over what this device draws and computes (no screen, window, languages, " +
      "time zone or user agent): page, and what the worker computes of it"),
      { device_hash: report.device.hash, page: report.device.main,
        worker: report.device.dedicated_worker }));
  }

  // The checks come from station (its answer to the report), never from this
  // page: they are `station check`'s, computed once, in one place.
  function renderVerdicts(answer) {
    const root = document.getElementById("verdicts");
    root.replaceChildren();
    root.appendChild(el("h2", t("Coherence checks")));
    if (!answer || !Array.isArray(answer.checks)) {
      const why = (answer && answer.error) || t("no verdicts came back");
      root.appendChild(el("p", t("station could not check this report: {why}", { why: why }),
        "check-error"));
      return null;
    }
    const checks = answer.checks;
    const failed = checks.filter((c) => !c.ok);
    const passed = checks.filter((c) => c.ok);
    const summary = t("{passed} of {total} checks pass",
      { passed: passed.length, total: checks.length });
    const line = root.appendChild(el("p", summary, failed.length ? "summary some-failed" : "summary"));
    line.id = "verdict-summary";
    const table = el("table");
    table.id = "verdict-table";
    table.appendChild(el("caption", failed.length
      ? t("The checks \"station check\" runs on this persona, failures first")
      : t("The checks \"station check\" runs on this persona")));
    const head = el("tr");
    for (const h of ["Check", "Result", "Expected", "Seen"]) {
      const th = head.appendChild(el("th", t(h)));
      th.scope = "col";
    }
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    for (const c of [...failed, ...passed]) {
      const row = body.appendChild(el("tr", undefined, c.ok ? "check-passed" : "check-failed"));
      const th = row.appendChild(el("th", typeof c.title === "string" && c.title ? c.title : c.name));
      th.scope = "row";
      row.appendChild(el("td", c.ok ? t("pass") : t("FAIL"), "result"));
      row.appendChild(el("td", show(c.expected)));
      row.appendChild(el("td", show(c.seen)));
    }
    root.appendChild(table);
    return summary;
  }

  // --- run ----------------------------------------------------------------------

  const status = document.getElementById("status");
  const params = new URLSearchParams(location.search);
  const report = {
    version: 1,
    scopes: {},
    headers: {},
    screen: {},
    media: {},
    webrtc: { candidates: [], stun: null, error: null },
    storage: {},
    misc: {},
    meta: {},
    hash: null,
    device: { main: null, dedicated_worker: null, hash: null },
  };
  try {
    // Storage first: the service worker scope below registers (and removes) a worker.
    report.storage = await storageSection();
    report.screen = screenSection();
    report.media = mediaSection();
    const [scopes, headers, webrtc, misc] = await Promise.all([
      allScopes(),
      headersSection(),
      webrtcSection(params.get("stun")),
      miscSection(),
    ]);
    Object.assign(report, { scopes, headers, webrtc, misc });
    // After the scopes: the drawings are timed by nothing but the device.
    const device = await S.collectDevice().catch((err) => ({ error: S.errorText(err) }));
    report.device = { main: device, dedicated_worker: workerDevice, hash: await S.deviceHash(device) };
    report.meta = {
      collected_at: new Date().toISOString(),
      elapsed_ms: Math.round(performance.now() - started),
    };
    report.hash = await S.fingerprintHash(report);
  } catch (err) {
    report.meta.error = S.errorText(err);
  }
  window.__stationReport = report;
  try {
    render(report);
  } catch (err) {
    status.textContent = t("Could not show the report: {error}", { error: S.errorText(err) });
  }
  try {
    const response = await fetch("/report", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(report),
    });
    if (!response.ok) throw new Error("the server answered " + response.status);
    let answer = null;
    try {
      answer = await response.json();
    } catch (err) {
      answer = { checks: null, error: "unreadable answer: " + S.errorText(err) };
    }
    const summary = renderVerdicts(answer);
    const hashes = { hash: report.hash, device: report.device.hash, summary: summary };
    status.textContent = summary
      ? t("Done. {summary}. Fingerprint hash {hash}. Device hash {device}", hashes)
      : t("Done. Fingerprint hash {hash}. Device hash {device}", hashes);
  } catch (err) {
    status.textContent = t("Done, but station did not receive the report: {error}",
      { error: S.errorText(err) });
    try {
      renderVerdicts({ checks: null, error: t("it did not receive the report") });
    } catch (_) { /* the status line already says it */ }
  }
  // Set last, so whoever waits for it can also rely on the POST having been made.
  document.body.dataset.ready = "1";
})();
