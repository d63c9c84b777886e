// Shared worker: answers every page that connects with its own view.
"use strict";
importScripts("/collect.js");

self.addEventListener("connect", (event) => {
  const port = event.ports[0];
  self.station.collectScope().then(
    (scope) => port.postMessage({ ok: true, scope }),
    (err) => port.postMessage({ ok: false, error: self.station.errorText(err) }),
  );
});
