// What one scope (page, iframe, dedicated, shared or service worker) tells a
// website. Loaded by the pages with <script> and by the workers with
// importScripts, so every scope runs the very same code.
// Also holds the fingerprint hash, which must stay equal to hash_material()
// and canonical_json() in server.py (a test checks that they agree).
"use strict";

(function (global) {
  const HIGH_ENTROPY_HINTS = [
    "architecture", "bitness", "model", "platformVersion", "fullVersionList", "uaFullVersion",
  ];
  // Keep in step with IDENTITY_HEADER in server.py.
  const IDENTITY_HEADER =
    /^(user-agent|accept-language|accept-encoding|dnt|sec-gpc|sec-ch-[a-z0-9-]+)$/;
  const SCOPE_NAMES = ["main", "iframe", "dedicated_worker", "shared_worker", "service_worker"];
  const SCOPE_KEYS = [
    "user_agent", "platform", "language", "languages", "hardware_concurrency", "device_memory",
    "webdriver", "ua_data", "time_zone", "locale", "timezone_offset", "http", "http_error",
    "fonts",
  ];
  // Font detection by text width: a family is available when text set in
  // "<family>", <base> is not as wide as in <base> alone for some base. Each
  // base is a different fallback, so a family equal to one of them still
  // differs from the other two.
  const FONT_BASES = ["monospace", "sans-serif", "serif"];
  const FONT_SAMPLE = "mmmmmmmmmmlli WQ@#0123456789 fiflÅé";
  const FONT_SIZE_PX = 72;

  function errorText(err) {
    if (err && typeof err === "object" && "message" in err) {
      return (err.name ? err.name + ": " : "") + err.message;
    }
    return String(err);
  }

  function withTimeout(promise, ms, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(what + " gave no answer in " + ms + " ms")), ms);
      Promise.resolve(promise).then(
        (value) => { clearTimeout(timer); resolve(value); },
        (err) => { clearTimeout(timer); reject(err); },
      );
    });
  }

  function orNull(value) {
    return value === undefined ? null : value;
  }

  function brandList(list) {
    return Array.isArray(list) ? list.map((b) => ({ brand: b.brand, version: b.version })) : null;
  }

  async function uaData(nav) {
    const data = nav.userAgentData;
    if (!data) return null;
    const out = {
      brands: brandList(data.brands),
      mobile: orNull(data.mobile),
      platform: orNull(data.platform),
      high_entropy: null,
      error: null,
    };
    try {
      const he = await withTimeout(data.getHighEntropyValues(HIGH_ENTROPY_HINTS), 3000,
        "getHighEntropyValues");
      out.high_entropy = {
        architecture: orNull(he.architecture),
        bitness: orNull(he.bitness),
        model: orNull(he.model),
        platform_version: orNull(he.platformVersion),
        full_version_list: he.fullVersionList ? brandList(he.fullVersionList) : null,
        ua_full_version: orNull(he.uaFullVersion),
      };
    } catch (err) {
      out.error = errorText(err);
    }
    return out;
  }

  function identityHeaders(headers) {
    const out = {};
    for (const name of Object.keys(headers || {})) {
      if (IDENTITY_HEADER.test(name)) out[name] = headers[name];
    }
    return out;
  }

  async function fetchHeaders() {
    const response = await withTimeout(
      fetch("/headers", { cache: "no-store", credentials: "same-origin" }), 4000, "fetch /headers");
    if (!response.ok) throw new Error("/headers answered " + response.status);
    return await response.json();
  }

  async function fetchFontNames() {
    const response = await withTimeout(
      fetch("/fonts.json", { cache: "no-store", credentials: "same-origin" }), 4000,
      "fetch /fonts.json");
    if (!response.ok) throw new Error("/fonts.json answered " + response.status);
    const data = await response.json();
    if (!data || !Array.isArray(data.families)) throw new Error("/fonts.json has no families");
    return data.families.filter((name) => typeof name === "string");
  }

  function quoteFamily(name) {
    return '"' + name.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }

  // OffscreenCanvas exists in windows and in every kind of worker, so all
  // scopes measure with the very same code.
  function detectFonts(names) {
    if (typeof OffscreenCanvas !== "function") throw new Error("OffscreenCanvas is not available");
    const ctx = new OffscreenCanvas(8, 8).getContext("2d");
    if (!ctx) throw new Error("OffscreenCanvas has no 2d context");
    const width = (font) => {
      ctx.font = FONT_SIZE_PX + "px " + font;
      return ctx.measureText(FONT_SAMPLE).width;
    };
    const base = {};
    for (const generic of FONT_BASES) base[generic] = width(generic);
    const found = names.filter((name) =>
      FONT_BASES.some((generic) => width(quoteFamily(name) + ", " + generic) !== base[generic]));
    return Array.from(new Set(found)).sort();
  }

  function emptyScope(error) {
    const scope = {};
    for (const key of SCOPE_KEYS) scope[key] = null;
    scope.error = error;
    return scope;
  }

  async function collectScope() {
    const nav = global.navigator;
    const scope = emptyScope(null);
    const problems = [];
    const take = (key, read) => {
      try {
        scope[key] = orNull(read());
      } catch (err) {
        problems.push(key + ": " + errorText(err));
      }
    };
    take("user_agent", () => nav.userAgent);
    take("platform", () => nav.platform);
    take("language", () => nav.language);
    take("languages", () => Array.from(nav.languages || []));
    take("hardware_concurrency", () => nav.hardwareConcurrency);
    take("device_memory", () => nav.deviceMemory);
    take("webdriver", () => nav.webdriver);
    take("time_zone", () => Intl.DateTimeFormat().resolvedOptions().timeZone);
    take("locale", () => Intl.DateTimeFormat().resolvedOptions().locale);
    take("timezone_offset", () => new Date().getTimezoneOffset());
    try {
      scope.ua_data = await uaData(nav);
    } catch (err) {
      problems.push("ua_data: " + errorText(err));
    }
    try {
      scope.fonts = detectFonts(await fetchFontNames());
    } catch (err) {
      problems.push("fonts: " + errorText(err));
    }
    try {
      scope.http = identityHeaders(await fetchHeaders());
    } catch (err) {
      scope.http_error = errorText(err);
    }
    // A partial failure keeps the values it got; error marks the scope as suspect.
    scope.error = problems.length ? problems.join("; ") : null;
    return scope;
  }

  // --- fingerprint hash -----------------------------------------------------
  // Fields in the hash (the same list is in server.py):
  //   version;
  //   scopes.<all five>: every field except timezone_offset (moves with
  //     daylight saving time; time_zone carries the identity), fonts included;
  //   headers: only identity headers (user-agent, accept-language,
  //     accept-encoding, dnt, sec-gpc, sec-ch-*);
  //   screen, media, misc: every field;
  //   webrtc: the sorted, de-duplicated set of [type, protocol, address] of
  //     the candidates, mDNS names (random per visit) replaced by "mdns".
  //   Left out: storage, meta (times), hash, and every key named "error" at
  //   any depth.

  function withoutErrors(value) {
    if (Array.isArray(value)) return value.map(withoutErrors);
    if (value !== null && typeof value === "object") {
      const out = {};
      for (const key of Object.keys(value)) {
        if (key !== "error") out[key] = withoutErrors(value[key]);
      }
      return out;
    }
    return value;
  }

  function canonical(value) {
    if (value === null || value === undefined) return "null";
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (typeof value === "object") {
      const keys = Object.keys(value).sort();
      return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  function candidateSet(webrtc) {
    const seen = new Map();
    const list = webrtc && Array.isArray(webrtc.candidates) ? webrtc.candidates : [];
    for (const c of list) {
      if (c === null || typeof c !== "object") continue;
      let address = orNull(c.address);
      if (typeof address === "string" && address.endsWith(".local")) address = "mdns";
      const item = [orNull(c.type), orNull(c.protocol), address];
      seen.set(canonical(item), item);
    }
    return Array.from(seen.keys()).sort().map((k) => seen.get(k));
  }

  function hashMaterial(reportIn) {
    // Hash what the server receives: the JSON round trip drops undefined and
    // turns NaN into null exactly as the wire does.
    const report = JSON.parse(JSON.stringify(reportIn));
    const scopes = {};
    for (const name of SCOPE_NAMES) {
      const scope = report.scopes && report.scopes[name];
      const copy = {};
      if (scope !== null && typeof scope === "object" && !Array.isArray(scope)) {
        for (const key of Object.keys(scope)) {
          if (key !== "timezone_offset") copy[key] = scope[key];
        }
      }
      scopes[name] = copy;
    }
    const headers = report.headers !== null && typeof report.headers === "object"
      ? identityHeaders(report.headers) : {};
    return withoutErrors({
      version: orNull(report.version),
      scopes,
      headers,
      screen: orNull(report.screen),
      media: orNull(report.media),
      misc: orNull(report.misc),
      webrtc: candidateSet(report.webrtc),
    });
  }

  async function sha256Hex(text) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function fingerprintHash(report) {
    return await sha256Hex(canonical(hashMaterial(report)));
  }

  global.station = {
    SCOPE_NAMES,
    collectScope,
    emptyScope,
    errorText,
    withTimeout,
    fetchHeaders,
    detectFonts,
    sha256Hex,
    canonical,
    hashMaterial,
    fingerprintHash,
  };
})(self);
