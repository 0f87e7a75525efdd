/* Busan Pay POS service worker: caches the app shell only (styles, scripts, icons, the
 * offline page). Never invoices, status, QR codes or any page with data: those always go to
 * the network, so a cashier never sees a stale "paid". */
"use strict";

var SHELL = "busanpay-pos-shell-v1";
var SHELL_FILES = [
  "/static/pos/pos.css",
  "/static/pos/pos.js",
  "/static/pos/receipt.css",
  "/static/pos/receipt.js",
  "/static/pos/icon-192.png",
  "/static/pos/icon-512.png",
  "/pos/offline"
];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(SHELL).then(function (cache) { return cache.addAll(SHELL_FILES); })
    .then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (name) {
      return name.indexOf("busanpay-pos-") === 0 && name !== SHELL;
    }).map(function (name) { return caches.delete(name); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) { return; }
  if (SHELL_FILES.indexOf(url.pathname) >= 0 && url.pathname !== "/pos/offline") {
    // The shell: network first (fresh after a deploy), the cached copy when offline.
    event.respondWith(fetch(request).catch(function () { return caches.match(url.pathname); }));
    return;
  }
  if (request.mode === "navigate") {
    // Pages are never cached; without a network, say so clearly.
    event.respondWith(fetch(request).catch(function () { return caches.match("/pos/offline"); }));
  }
  // Everything else (status.json, invoice details, QR codes, charges) goes straight to the
  // network, untouched.
});
