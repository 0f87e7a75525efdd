/* Busan Pay checkout page: live status, countdown, copy buttons. Vanilla JS, no libraries.
 *
 * Polls status.json about every 1.5 s (1 s while a BOLT11 is offered) with If-None-Match (a 304 costs the server one
 * primary-key read). When only amounts changed (another partial payment) it updates them in
 * place; when the invoice's state changed it fetches the page again and swaps the <main>
 * element, so the new explanation appears without a reload (a full reload is the fallback).
 * All texts come from the page (translated on the server).
 */
(function () {
  "use strict";

  var FAST = 1500;          // ms between polls while the tourist is paying
  var LIGHTNING = 1000;     // ms, while a BOLT11 is offered (paid in a second: show it soon)
  var SLOW = 15000;         // ms between polls once the state is final
  var MAX_BACKOFF = 20000;  // ms, after network errors

  var etag = null;
  var timer = null;
  var failures = 0;
  var skewMs = 0;           // server clock minus this device's clock
  var stopped = false;

  function root() { return document.getElementById("checkout"); }

  function num(el, name) { return parseInt(el.getAttribute("data-" + name), 10); }

  function syncClock(serverUnix) {
    if (!isNaN(serverUnix)) { skewMs = serverUnix * 1000 - Date.now(); }
  }

  function isFinal(status) { return status === "Settled" || status === "Invalid" || status === "Expired"; }

  /* -- countdown ------------------------------------------------------------------------ */
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tick() {
    var el = root();
    if (!el) { return; }
    var out = el.querySelector("[data-countdown]");
    if (!out) { return; }
    var expires = num(el, "expires") * 1000;
    var created = num(el, "created") * 1000;
    var left = Math.max(0, expires - (Date.now() + skewMs));
    var seconds = Math.ceil(left / 1000);
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    out.textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s);
    var box = out.closest(".countdown");
    if (box) { box.classList.toggle("ending", seconds <= 120); }
    var bar = el.querySelector("[data-bar]");
    if (bar && expires > created) {
      bar.style.width = Math.max(0, Math.min(100, 100 * left / (expires - created))) + "%";
    }
    if (left <= 0) { showTimeUp(el); }
  }

  function showTimeUp(el) {
    // The server decides Expired; meanwhile nobody should start a payment that arrives late.
    var pay = el.querySelectorAll("[data-pay]");
    var waiting = el.querySelector("[data-waiting]");
    var timeup = el.querySelector("[data-timeup]");
    for (var i = 0; i < pay.length; i++) { pay[i].hidden = true; }
    if (waiting) { waiting.hidden = true; }
    if (timeup) { timeup.hidden = false; }
  }

  /* -- in-place updates ------------------------------------------------------------------- */
  function setBound(el, name, value) {
    var nodes = el.querySelectorAll('[data-bind="' + name + '"]');
    for (var i = 0; i < nodes.length; i++) { nodes[i].textContent = value; }
    var copies = el.querySelectorAll('[data-copy-bind="' + name + '"]');
    for (var j = 0; j < copies.length; j++) { copies[j].setAttribute("data-copy", value); }
  }

  function updateInPlace(el, data) {
    setBound(el, "paidBtc", data.paidBtc);
    setBound(el, "remainingBtc", data.remainingBtc);
    el.setAttribute("data-version", String(data.version));
    el.setAttribute("data-expires", String(data.expirationTime));
    if (el.getAttribute("data-state") !== "partial") { return; }
    if (String(data.remainingSats) === el.getAttribute("data-remaining-sats")) { return; }
    // With Lightning the rest has its own BOLT11 (a new unified QR and link): the page has them.
    if (el.hasAttribute("data-lightning")) { swapMarkup(); return; }
    el.setAttribute("data-remaining-sats", String(data.remainingSats));
    // The wallet link and the QR ask for what is left to pay.
    var link = el.querySelector("[data-uri-template]");
    if (link) {
      var uri = link.getAttribute("data-uri-template").replace("{amount}", data.remainingBtc);
      var links = el.querySelectorAll("[data-wallet-link]");
      for (var i = 0; i < links.length; i++) { links[i].setAttribute("href", uri); }
    }
    var qr = el.querySelector("[data-qr-rest]");
    var base = el.getAttribute("data-qr-rest-url");
    if (qr && base && data.remainingSats > 0) {
      qr.setAttribute("src", base.replace(/\/0\.svg$/, "/" + data.remainingSats + ".svg"));
    }
  }

  function swapMarkup() {
    // New state, new explanation: fetch this page again and replace <main>.
    return fetch(window.location.href, {
      headers: { "Accept": "text/html" }, cache: "no-store", credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("checkout");
      var current = root();
      if (!fresh || !current) { throw new Error("no #checkout"); }
      current.replaceWith(document.importNode(fresh, true));
      if (doc.title) { document.title = doc.title; }
      syncClock(num(root(), "now"));
      tick();
    }).catch(function () {
      window.location.reload();
    });
  }

  /* -- polling ---------------------------------------------------------------------------- */
  function schedule(ms) {
    clearTimeout(timer);
    if (!stopped) { timer = setTimeout(poll, ms); }
  }

  function offline(show) {
    var note = document.querySelector("[data-offline]");
    if (note) { note.hidden = !show; }
  }

  function poll() {
    var el = root();
    if (!el) { return; }
    if (document.hidden) { return; }  // resumed by visibilitychange
    var headers = { "Accept": "application/json" };
    if (etag) { headers["If-None-Match"] = etag; }
    fetch(el.getAttribute("data-status-url"), {
      headers: headers, cache: "no-store", credentials: "same-origin"
    }).then(function (response) {
      failures = 0;
      offline(false);
      if (response.status === 304) { return null; }
      if (response.status === 404) { stopped = true; return null; }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      etag = response.headers.get("ETag");
      return response.json();
    }).then(function (data) {
      var current = root();
      if (!data || !current) { return; }
      syncClock(data.now);
      if (data.status !== current.getAttribute("data-status") ||
          data.additionalStatus !== current.getAttribute("data-additional")) {
        return swapMarkup();
      }
      updateInPlace(current, data);
    }).catch(function () {
      failures += 1;
      if (failures >= 2) { offline(true); }
    }).then(function () {
      var current = root();
      var status = current ? current.getAttribute("data-status") : "";
      var wait = failures ? Math.min(MAX_BACKOFF, FAST * Math.pow(2, failures)) :
        (isFinal(status) ? SLOW : (current && current.hasAttribute("data-lightning") ? LIGHTNING : FAST));
      schedule(wait);
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { schedule(0); }
  });

  /* -- copy buttons (delegated, so swapped markup needs no wiring) -------------------------- */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-offscreen";
      area.style.position = "fixed";
      area.style.top = "-1000px";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function feedback(button, ok) {
    var el = root();
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.classList.remove("copied", "copy-failed");
    button.classList.add(ok ? "copied" : "copy-failed");
    button.textContent = ok ? el.getAttribute("data-copied") : label;
    var field = button.closest(".field");
    var help = field && field.querySelector(".copy-help");
    if (!ok && field && !help) {
      help = document.createElement("p");
      help.className = "copy-help";
      help.setAttribute("role", "alert");
      help.textContent = el.getAttribute("data-copy-failed");
      field.appendChild(help);
    }
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(function () {
      button.textContent = label;
      button.classList.remove("copied", "copy-failed");
    }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (button) {
      copyText(button.getAttribute("data-copy")).then(
        function () { feedback(button, true); },
        function () { feedback(button, false); });
      return;
    }
    var print = event.target.closest ? event.target.closest("[data-print]") : null;
    if (print) { window.print(); }
  });

  /* -- start ------------------------------------------------------------------------------ */
  function start() {
    var el = root();
    if (!el) { return; }
    syncClock(num(el, "now"));
    tick();
    setInterval(tick, 1000);
    schedule(FAST);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
