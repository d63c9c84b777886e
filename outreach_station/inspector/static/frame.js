// The same-origin iframe: reports its own view to the parent page.
"use strict";

self.station.collectScope().then(
  (scope) => parent.postMessage({ kind: "station-scope", ok: true, scope }, location.origin),
  (err) => parent.postMessage(
    { kind: "station-scope", ok: false, error: self.station.errorText(err) }, location.origin),
);
