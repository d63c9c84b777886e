// Service worker: answers a "collect" message on the port it is sent. It has
// no fetch handler, so it never stands between a page and the network.
"use strict";
importScripts("/collect.js");

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const port = event.ports[0];
  if (!port || !event.data || event.data.kind !== "collect") return;
  event.waitUntil(self.station.collectScope().then(
    (scope) => port.postMessage({ ok: true, scope }),
    (err) => port.postMessage({ ok: false, error: self.station.errorText(err) }),
  ));
});
