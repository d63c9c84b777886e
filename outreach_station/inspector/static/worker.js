// Dedicated worker: reports its own view, and the device signals it can
// compute (the page compares them with its own), to the page that started it.
"use strict";
importScripts("/collect.js");

Promise.all([self.station.collectScope(), self.station.collectDevice()]).then(
  ([scope, device]) => self.postMessage({ ok: true, scope, device }),
  (err) => self.postMessage({ ok: false, error: self.station.errorText(err) }),
);
