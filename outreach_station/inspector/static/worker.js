// Dedicated worker: reports its own view to the page that started it.
"use strict";
importScripts("/collect.js");

self.station.collectScope().then(
  (scope) => self.postMessage({ ok: true, scope }),
  (err) => self.postMessage({ ok: false, error: self.station.errorText(err) }),
);
