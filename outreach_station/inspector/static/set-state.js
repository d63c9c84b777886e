// Test helper: ?cookie=n=v&local=k=v&session=k=v sets script cookies and
// storage (?http_cookie=n=v is set by the server as HttpOnly). Values are
// never shown, here or on the inspector page.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const pairs = (name) => params.getAll(name).map((p) => {
    const at = p.indexOf("=");
    return at < 0 ? [p, ""] : [p.slice(0, at), p.slice(at + 1)];
  });
  for (const [name, value] of pairs("cookie")) {
    document.cookie = encodeURIComponent(name) + "=" + encodeURIComponent(value) +
      "; path=/; SameSite=Strict; max-age=3600";
  }
  for (const [key, value] of pairs("local")) localStorage.setItem(key, value);
  for (const [key, value] of pairs("session")) sessionStorage.setItem(key, value);
  const done = () => { document.body.dataset.ready = "1"; };
  const dbs = params.getAll("indexeddb");
  if (!dbs.length) { done(); return; }
  let left = dbs.length;
  for (const name of dbs) {
    const req = indexedDB.open(name, 1);
    req.onsuccess = () => { req.result.close(); if (--left === 0) done(); };
    req.onerror = () => { if (--left === 0) done(); };
  }
})();
