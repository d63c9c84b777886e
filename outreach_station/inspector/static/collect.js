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

  // --- device signals ---------------------------------------------------------
  // What a fingerprinter that aims at the device (not the visitor) hashes:
  // what the machine draws and computes, never the screen, window, languages,
  // time zone or user agent. The page and the dedicated worker run this same
  // code; the parts a worker lacks (offline audio, CSS system fonts) are page
  // only. Every drawing is reduced to a SHA-256 of its pixels.
  const DEVICE_TEXT = "Cwm fjordbank glyphs vext quiz, Åäö ß 0.1 fi ffl @#&";
  const DEVICE_EMOJI = "\u{1F600}\u{1F44D}\u{1F3FD}\u{2764}\u{FE0F}\u{1F1F8}\u{1F1EA}\u{1F9D1}\u{200D}\u{1F4BB}";
  const SYSTEM_FONTS = ["caption", "icon", "menu", "message-box", "small-caption", "status-bar"];
  const WEBGL_PARAMS = [
    "VERSION", "SHADING_LANGUAGE_VERSION", "VENDOR", "RENDERER", "MAX_TEXTURE_SIZE",
    "MAX_CUBE_MAP_TEXTURE_SIZE", "MAX_RENDERBUFFER_SIZE", "MAX_VIEWPORT_DIMS",
    "MAX_VERTEX_ATTRIBS", "MAX_VERTEX_UNIFORM_VECTORS", "MAX_FRAGMENT_UNIFORM_VECTORS",
    "MAX_VARYING_VECTORS", "MAX_TEXTURE_IMAGE_UNITS", "MAX_VERTEX_TEXTURE_IMAGE_UNITS",
    "MAX_COMBINED_TEXTURE_IMAGE_UNITS", "ALIASED_LINE_WIDTH_RANGE", "ALIASED_POINT_SIZE_RANGE",
    "RED_BITS", "GREEN_BITS", "BLUE_BITS", "ALPHA_BITS", "DEPTH_BITS", "STENCIL_BITS",
    "SUBPIXEL_BITS", "SAMPLES", "SAMPLE_BUFFERS",
  ];

  async function pixelsHash(ctx, width, height) {
    const data = ctx.getImageData(0, 0, width, height).data;
    const digest = await crypto.subtle.digest("SHA-256", data);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function canvas2d(width, height) {
    if (typeof OffscreenCanvas !== "function") throw new Error("OffscreenCanvas is not available");
    const ctx = new OffscreenCanvas(width, height).getContext("2d");
    if (!ctx) throw new Error("OffscreenCanvas has no 2d context");
    return ctx;
  }

  async function canvasSignals() {
    const out = {};
    let ctx = canvas2d(420, 120);
    ctx.textBaseline = "alphabetic";
    const fonts = ["16px sans-serif", "15px serif", "14px monospace", "17px Arial",
      "italic bold 19px \"Times New Roman\"", "13px system-ui"];
    fonts.forEach((font, i) => {
      ctx.font = font;
      ctx.fillStyle = i % 2 ? "#069" : "rgba(20, 40, 60, 0.9)";
      ctx.fillText(DEVICE_TEXT, 2 + i, 18 + i * 17);
    });
    ctx.font = "22px sans-serif";
    ctx.strokeStyle = "#c30";
    ctx.strokeText("Wy", 360, 40);
    out.text = await pixelsHash(ctx, 420, 120);
    ctx = canvas2d(300, 48);
    ctx.font = "32px sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(DEVICE_EMOJI, 2, 4);
    out.emoji = await pixelsHash(ctx, 300, 48);
    out.emoji_width = ctx.measureText(DEVICE_EMOJI).width;
    ctx = canvas2d(200, 120);
    const gradient = ctx.createLinearGradient(0, 0, 200, 120);
    gradient.addColorStop(0, "#f60");
    gradient.addColorStop(1, "rgba(0, 102, 153, 0.6)");
    ctx.fillStyle = gradient;
    ctx.beginPath();
    ctx.moveTo(10, 110);
    ctx.bezierCurveTo(40, -20, 120, 150, 190, 10);
    ctx.quadraticCurveTo(150, 100, 10, 110);
    ctx.fill();
    ctx.globalCompositeOperation = "multiply";
    ctx.shadowBlur = 6;
    ctx.shadowColor = "rgba(0, 0, 0, 0.5)";
    ctx.fillStyle = "rgba(102, 204, 0, 0.7)";
    ctx.beginPath();
    ctx.arc(100, 60, 37.3, 0.1, Math.PI * 1.9, false);
    ctx.fill("evenodd");
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = "#339";
    ctx.beginPath();
    ctx.ellipse(60, 40, 30.5, 12.25, 0.7, 0, Math.PI * 2);
    ctx.stroke();
    out.paths = await pixelsHash(ctx, 200, 120);
    out.text_metrics = ["16px sans-serif", "15px serif", "14px monospace"].map((font) => {
      ctx.font = font;
      const m = ctx.measureText(DEVICE_TEXT);
      return [m.width, m.actualBoundingBoxAscent, m.actualBoundingBoxDescent];
    });
    return out;
  }

  const VERTEX = "attribute vec2 p; attribute vec3 c; varying vec3 v; " +
    "void main() { v = c; gl_Position = vec4(p, 0.0, 1.0); gl_PointSize = 7.5; }";
  const FRAGMENT = "precision mediump float; varying vec3 v; " +
    "void main() { gl_FragColor = vec4(sin(v * 7.3) * 0.5 + 0.5, 1.0); }";

  async function webglSignals() {
    if (typeof OffscreenCanvas !== "function") throw new Error("OffscreenCanvas is not available");
    const canvas = new OffscreenCanvas(64, 64);
    const gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
    if (!gl) return null;
    const params = {};
    for (const name of WEBGL_PARAMS) {
      const value = gl.getParameter(gl[name]);
      params[name] = value !== null && typeof value === "object" ? Array.from(value) : value;
    }
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    params.UNMASKED_VENDOR = info ? gl.getParameter(info.UNMASKED_VENDOR_WEBGL) : null;
    params.UNMASKED_RENDERER = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : null;
    const precision = {};
    for (const shader of ["VERTEX_SHADER", "FRAGMENT_SHADER"]) {
      for (const kind of ["LOW_FLOAT", "MEDIUM_FLOAT", "HIGH_FLOAT", "HIGH_INT"]) {
        const f = gl.getShaderPrecisionFormat(gl[shader], gl[kind]);
        precision[shader + "." + kind] = f ? [f.rangeMin, f.rangeMax, f.precision] : null;
      }
    }
    const compile = (type, source) => {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      return shader;
    };
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    gl.useProgram(program);
    const data = new Float32Array([
      -0.9, -0.8, 1, 0.2, 0.1, 0.85, -0.6, 0.3, 1, 0.4, -0.1, 0.95, 0.1, 0.6, 0.9,
      0.7, 0.7, 0.5, 0.5, 0.2, -0.7, 0.4, 0.9, 0.1, 0.3,
    ]);
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    const p = gl.getAttribLocation(program, "p");
    const c = gl.getAttribLocation(program, "c");
    gl.enableVertexAttribArray(p);
    gl.enableVertexAttribArray(c);
    gl.vertexAttribPointer(p, 2, gl.FLOAT, false, 20, 0);
    gl.vertexAttribPointer(c, 3, gl.FLOAT, false, 20, 8);
    gl.clearColor(0.05, 0.1, 0.15, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    gl.drawArrays(gl.LINE_STRIP, 2, 3);
    gl.drawArrays(gl.POINTS, 0, 5);
    const pixels = new Uint8Array(64 * 64 * 4);
    gl.readPixels(0, 0, 64, 64, gl.RGBA, gl.UNSIGNED_BYTE, pixels);
    const digest = await crypto.subtle.digest("SHA-256", pixels);
    return {
      params,
      precision,
      extensions: (gl.getSupportedExtensions() || []).slice().sort(),
      image: Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""),
    };
  }

  // Local fonts found by name, two ways a page can ask: FontFace with a
  // local() source, and FontFaceSet.check (document.fonts or self.fonts).
  async function localFonts(names) {
    const set = global.document ? global.document.fonts : global.fonts;
    const found = [];
    const checked = [];
    await Promise.all(names.map(async (name, i) => {
      try {
        const face = new FontFace("station-probe-" + i, "local(" + quoteFamily(name) + ")");
        await withTimeout(face.load(), 3000, "FontFace " + name);
        found.push(name);
      } catch (_) { /* not on this device */ }
    }));
    if (set && typeof set.check === "function") {
      for (const name of names) if (set.check("12px " + quoteFamily(name))) checked.push(name);
    }
    return { local: found.sort(), check: checked.sort() };
  }

  async function audioSignal() {
    const Offline = global.OfflineAudioContext || global.webkitOfflineAudioContext;
    if (typeof Offline !== "function") return null;
    const context = new Offline(1, 5000, 44100);
    const oscillator = context.createOscillator();
    oscillator.type = "triangle";
    oscillator.frequency.value = 10000;
    const compressor = context.createDynamicsCompressor();
    compressor.threshold.value = -50;
    compressor.knee.value = 40;
    compressor.ratio.value = 12;
    compressor.attack.value = 0;
    compressor.release.value = 0.25;
    oscillator.connect(compressor);
    compressor.connect(context.destination);
    oscillator.start(0);
    const buffer = await withTimeout(context.startRendering(), 5000, "OfflineAudioContext");
    const samples = buffer.getChannelData(0);
    let sum = 0;
    for (let i = 4500; i < 5000; i++) sum += Math.abs(samples[i]);
    const digest = await crypto.subtle.digest("SHA-256", samples.slice().buffer);
    return {
      sum: sum,
      samples: Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""),
    };
  }

  // CSS system fonts (`font: caption` etc.): the family and size the
  // platform gives them, and how wide a sample is set in each.
  function systemFonts() {
    const doc = global.document;
    if (!doc || !doc.body) return null;
    const out = {};
    const span = doc.createElement("span");
    span.textContent = DEVICE_TEXT;
    span.style.position = "absolute";
    span.style.visibility = "hidden";
    span.style.whiteSpace = "nowrap";
    doc.body.appendChild(span);
    try {
      for (const name of [...SYSTEM_FONTS, "16px system-ui", "16px sans-serif"]) {
        span.style.font = name;
        const style = getComputedStyle(span);
        const box = span.getBoundingClientRect();
        out[name] = [style.fontFamily, style.fontSize, style.fontWeight, box.width, box.height];
      }
    } finally {
      span.remove();
    }
    return out;
  }

  // Every part on its own: one missing API costs that part (null and a note
  // in error), never the whole collection.
  async function collectDevice() {
    const nav = global.navigator;
    const out = {
      canvas: null, webgl: null, fonts: null, hardware_concurrency: null,
      device_memory: null, audio: null, system_fonts: null, error: null,
    };
    const problems = [];
    const part = async (key, read) => {
      try {
        out[key] = orNull(await read());
      } catch (err) {
        problems.push(key + ": " + errorText(err));
      }
    };
    await part("hardware_concurrency", () => nav.hardwareConcurrency);
    await part("device_memory", () => nav.deviceMemory);
    await part("canvas", canvasSignals);
    await part("webgl", webglSignals);
    await part("fonts", async () => localFonts(await fetchFontNames()));
    if (global.document) {
      await part("audio", audioSignal);
      await part("system_fonts", systemFonts);
    } else {
      // Not exposed to workers: absent, as a fingerprinter's worker finds it.
      delete out.audio;
      delete out.system_fonts;
    }
    out.error = problems.length ? problems.join("; ") : null;
    return out;
  }

  // The device hash: SHA-256 over the canonical JSON of the page's device
  // signals, every "error" key left out (same as device_hash() in server.py).
  async function deviceHash(device) {
    return await sha256Hex(canonical(withoutErrors(JSON.parse(JSON.stringify(device || {})))));
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
    collectDevice,
    deviceHash,
  };
})(self);
