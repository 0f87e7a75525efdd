/* Busan Pay POS register: keypad → charge → full-screen QR with live status.
 *
 * Live status: the invoice's public status.json is polled every second with If-None-Match
 * (a 304 while nothing changed costs the server one primary-key read), every 250 ms while
 * the QR carries a BOLT11 (a Lightning payment settles in a second: "Paid" must show within
 * one; bench/bench_lightning.py measures it); the POS details
 * (/pos/invoices/<id>.json) are fetched only when the status version changes.
 * The sale on screen is kept in localStorage, so a reload or a network blip returns to it.
 * Every word shown comes from the page's data-t-* attributes (translated on the server).
 * Vanilla JS, no libraries, nothing from other origins.
 */
(function () {
  "use strict";

  var root = document.getElementById("pos");
  if (!root) { return; }

  var POLL_MS = 1000;
  var LIGHTNING_POLL_MS = 250;
  var STORE = root.getAttribute("data-store");
  var STORAGE_KEY = "busanpay.pos.sale." + STORE;
  var MAX_KRW = parseInt(root.getAttribute("data-max-krw"), 10) || 100000000;
  var FINAL = { Settled: true, Invalid: true, Expired: true };

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function t(name) { return root.getAttribute("data-t-" + name) || ""; }
  function $(selector, scope) { return (scope || root).querySelector(selector); }
  function $all(selector, scope) { return Array.prototype.slice.call((scope || root).querySelectorAll(selector)); }

  /* -- money ------------------------------------------------------------------------------ */
  function grouped(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function won(n) { return "\u20a9" + grouped(n); }
  /* Same rule as the server (pos/sales.py tip_for): whole won, half up; exact below 2^53. */
  function tipFor(subtotal, percent) { return Math.floor((subtotal * percent + 50) / 100); }

  /* -- the keypad ------------------------------------------------------------------------- */
  var digits = "";
  var tipPercent = 0;
  var busy = false;
  var amountOut = $("#amount");
  var memoInput = $("#memo");
  var chargeButton = $("[data-charge]");
  var errorBox = $("[data-error]");

  function subtotal() { return digits ? parseInt(digits, 10) : 0; }

  function showError(box, message) {
    box.textContent = message || "";
    box.hidden = !message;
  }

  function renderEntry() {
    var sub = subtotal();
    var tip = tipFor(sub, tipPercent);
    amountOut.textContent = won(sub);
    $("[data-subtotal]").textContent = won(sub);
    $("[data-tip]").textContent = won(tip);
    $("[data-total]").textContent = won(sub + tip);
    chargeButton.textContent = busy ? t("charging") : t("charge").replace("{amount}", won(sub + tip));
    chargeButton.disabled = busy || sub <= 0;
    root.classList.toggle("has-tip", tipPercent > 0);
  }

  function press(key) {
    if (busy) { return; }
    showError(errorBox, "");
    if (key === "clear") { digits = ""; }
    else if (key === "back") { digits = digits.slice(0, -1); }
    else if (/^\d+$/.test(key)) {
      var next = (digits + key).replace(/^0+/, "");
      if (next && parseInt(next, 10) + tipFor(parseInt(next, 10), tipPercent) > MAX_KRW) {
        showError(errorBox, t("max").replace("{max}", won(MAX_KRW)));
        return;
      }
      digits = next;
    }
    renderEntry();
  }

  $(".keypad").addEventListener("click", function (event) {
    var key = event.target.closest("[data-key]");
    if (key) { press(key.getAttribute("data-key")); }
  });
  $all('input[name="tip"]').forEach(function (radio) {
    radio.addEventListener("change", function () {
      tipPercent = parseInt(radio.value, 10) || 0;
      if (subtotal() + tipFor(subtotal(), tipPercent) > MAX_KRW) {
        showError(errorBox, t("max").replace("{max}", won(MAX_KRW)));
      } else {
        showError(errorBox, "");
      }
      renderEntry();
    });
  });
  chargeButton.addEventListener("click", charge);

  document.addEventListener("keydown", function (event) {
    if (!$("#sale").hidden || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var typing = event.target === memoInput;
    if (/^[0-9]$/.test(event.key) && !typing) { press(event.key); event.preventDefault(); }
    else if (event.key === "Backspace" && !typing) { press("back"); event.preventDefault(); }
    else if (event.key === "Escape" && !typing) { press("clear"); }
    else if (event.key === "Enter" && (typing || event.target === document.body)) {
      event.preventDefault();
      charge();
    }
  });

  /* -- talking to the server ---------------------------------------------------------------- */
  function newKey() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function toLogin() {
    window.location.href = root.getAttribute("data-login-url") + "?next=" + encodeURIComponent("/pos");
  }

  function refreshCsrf() {
    return fetch(root.getAttribute("data-session-url"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || !response.ok) { toLogin(); throw new Error("signed out"); }
        return response.json();
      }).then(function (data) { csrf = data.csrfToken; });
  }

  function send(method, url, body, headers, retried) {
    var allHeaders = { "Accept": "application/json", "X-CSRFToken": csrf };
    if (body !== undefined) { allHeaders["Content-Type"] = "application/json"; }
    Object.keys(headers || {}).forEach(function (name) { allHeaders[name] = headers[name]; });
    return fetch(url, {
      method: method, headers: allHeaders, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      if (response.redirected && /\/login/.test(response.url)) { toLogin(); throw new Error("signed out"); }
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data };
      });
    }).then(function (result) {
      if (result.status === 400 && result.data.code === "csrf" && !retried) {
        return refreshCsrf().then(function () { return send(method, url, body, headers, true); });
      }
      return result;
    });
  }

  /* -- charge ---------------------------------------------------------------------------- */
  var attempt = { key: null, body: null };

  function charge() {
    if (busy || subtotal() <= 0) { return; }
    unlockAudio();
    var body = { amount: String(subtotal()), tipPercent: tipPercent, memo: memoInput.value };
    var signature = JSON.stringify(body);
    // One key per attempt: a retry after a network blip returns the same invoice.
    if (attempt.body !== signature) { attempt = { key: newKey(), body: signature }; }
    busy = true;
    showError(errorBox, "");
    renderEntry();
    send("POST", root.getAttribute("data-charge-url"), body, { "Idempotency-Key": attempt.key })
      .then(function (result) {
        busy = false;
        if (result.status === 201) {
          attempt = { key: null, body: null };
          digits = "";
          memoInput.value = "";
          renderEntry();
          openSale(result.data, false);
          return;
        }
        renderEntry();
        showError(errorBox, result.data.message || t("error"));
      }, function (error) {
        busy = false;
        renderEntry();
        if (error && error.message === "signed out") { return; }
        showError(errorBox, t("offline-charge"));
      });
  }

  /* -- the sale screen --------------------------------------------------------------------- */
  var saleBox = $("#sale");
  var saleError = $("[data-sale-error]");
  var current = null;        // the details on screen
  var etag = null;
  var timer = null;
  var skewMs = 0;
  var failures = 0;

  function remember(details) {
    try { localStorage.setItem(STORAGE_KEY, JSON.stringify(details)); } catch (e) { /* private mode */ }
  }
  function forget() {
    try { localStorage.removeItem(STORAGE_KEY); } catch (e) { /* private mode */ }
  }
  function remembered() {
    try { return JSON.parse(localStorage.getItem(STORAGE_KEY) || "null"); } catch (e) { return null; }
  }

  function bind(name, value) {
    $all('[data-bind="' + name + '"]', saleBox).forEach(function (node) { node.textContent = value || ""; });
  }

  function finalNote(d) {
    if (d.state === "expired") {
      if (d.additionalStatus === "PaidLate") { return t("expired-paid-late"); }
      if (d.additionalStatus === "PaidPartial") { return t("expired-partial"); }
      return t("expired-none");
    }
    if (d.state === "invalid") {
      return d.additionalStatus === "Marked" ? t("invalid-marked") : t("invalid-other");
    }
    return "";
  }

  function render(d, announce) {
    var before = current ? current.state : null;
    current = d;
    remember(d);
    saleBox.setAttribute("data-state", d.state);
    $all("[data-part]", saleBox).forEach(function (node) {
      node.hidden = node.getAttribute("data-part").split(" ").indexOf(d.state) < 0;
    });
    bind("amountText", d.amountText);
    bind("dueBtc", d.dueBtc);
    bind("memo", d.memo);
    bind("remainingText", d.remainingText);
    bind("remainingBtc", d.remainingBtc);
    bind("remainingSatsText", d.remainingSatsText);
    bind("waysText", d.waysText);
    bind("methodText", d.methodText);
    $(".sale-method", saleBox).setAttribute("data-way", d.way || "");
    // 0-conf under the city's limit: say so, never "confirmed".
    $("[data-zero-conf]", saleBox).hidden = !d.acceptedUnconfirmed;
    $("[data-confirmed]", saleBox).hidden = !!d.acceptedUnconfirmed;
    bind("finalNote", finalNote(d));
    var over = $('[data-bind="overNote"]', saleBox);
    over.textContent = d.additionalStatus === "PaidOver" ? t("overpaid").replace("{btc}", d.overpaidBtc) : "";
    over.hidden = d.additionalStatus !== "PaidOver";
    var qr = $("[data-qr]", saleBox);
    var src = d.state === "partial" && d.restQrUrl ? d.restQrUrl : d.qrUrl;
    if (qr.getAttribute("src") !== src) { qr.setAttribute("src", src); }
    $("[data-receipt]", saleBox).setAttribute("href", d.receiptUrl);
    if (typeof d.now === "number") { skewMs = d.now * 1000 - Date.now(); }
    tick();
    if (announce && before !== d.state) {
      if (d.state === "settled") { beep("paid"); }
      else if (d.state === "processing") { beep("received"); }
      else if (d.state === "partial") { beep("partial"); }
    }
  }

  function openSale(details, restored) {
    clearTimeout(cancelArmed);
    cancelArmed = null;
    armCancel(false);
    etag = null;
    failures = 0;
    showError(saleError, "");
    saleBox.hidden = false;
    $all(".entry, .keypad").forEach(function (node) { node.setAttribute("inert", ""); });
    render(details, !restored);
    var title = $(".sale-status h2:not([hidden])", saleBox) || $("[data-part]:not([hidden]) h2", saleBox);
    if (title) { title.setAttribute("tabindex", "-1"); title.focus({ preventScroll: true }); }
    schedule(pollEvery());
  }

  function pollEvery() {
    return current && current.lightning && !FINAL[current.status] ? LIGHTNING_POLL_MS : POLL_MS;
  }

  function closeSale() {
    clearTimeout(timer);
    current = null;
    forget();
    saleBox.hidden = true;
    offline(false);
    $all(".entry, .keypad").forEach(function (node) { node.removeAttribute("inert"); });
    renderEntry();
    chargeButton.focus({ preventScroll: true });
  }

  /* -- countdown ---------------------------------------------------------------------------- */
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    if (!current) { return; }
    var out = $("[data-countdown]", saleBox);
    var left = Math.max(0, current.expirationTime * 1000 - (Date.now() + skewMs));
    var seconds = Math.ceil(left / 1000);
    out.textContent = Math.floor(seconds / 60) + ":" + pad(seconds % 60);
    out.parentNode.classList.toggle("ending", seconds <= 120);
  }
  setInterval(tick, 500);

  /* -- live status ---------------------------------------------------------------------------- */
  function offline(show) {
    var banner = $("[data-offline]");
    if (banner) { banner.hidden = !show; }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function fetchDetails() {
    return fetch(current.detailsUrl, { credentials: "same-origin", cache: "no-store",
                                       headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.redirected && /\/login/.test(response.url)) { toLogin(); throw new Error("signed out"); }
        if (response.status === 404) { closeSale(); return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  function poll() {
    if (!current) { return; }
    var id = current.id;
    var headers = { "Accept": "application/json" };
    if (etag) { headers["If-None-Match"] = etag; }
    fetch(current.statusUrl, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 304) { return null; }
        if (response.status === 404) { closeSale(); return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        etag = response.headers.get("ETag");
        return response.json();
      })
      .then(function (status) {
        if (!status || !current || current.id !== id) { return null; }
        if (typeof status.now === "number") { skewMs = status.now * 1000 - Date.now(); }
        if (status.version !== current.version || status.status !== current.status ||
            status.additionalStatus !== current.additionalStatus) {
          return fetchDetails().then(function (details) {
            if (details && current && current.id === details.id) { render(details, true); }
          });
        }
        return null;
      })
      .then(function () {
        failures = 0;
        offline(false);
      }, function (error) {
        if (error && error.message === "signed out") { return; }
        failures += 1;
        offline(true);
      })
      .then(function () {
        if (!current || current.id !== id) { return; }
        // Keep polling until the sale is final; retry every second while offline.
        if (failures) { schedule(POLL_MS); }
        else if (!FINAL[current.status]) { schedule(pollEvery()); }
      });
  }

  window.addEventListener("online", function () { if (current) { schedule(0); } });
  window.addEventListener("offline", function () { if (current) { offline(true); } });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && current) { schedule(0); }
  });

  /* -- actions on the sale screen --------------------------------------------------------------- */
  var cancelButton = $("[data-cancel]", saleBox);
  var cancelArmed = null;

  function armCancel(armed) {
    cancelButton.classList.toggle("armed", armed);
    $(".cancel-label", cancelButton).setAttribute("aria-hidden", armed ? "true" : "false");
    $(".cancel-confirm", cancelButton).setAttribute("aria-hidden", armed ? "false" : "true");
  }

  // pointerup as well as click: a tap that lands while the screen is still settling (the QR
  // loading, focus moving) can lose its click; the first of the two is acted on once.
  var lastPress = 0;
  function onCancel(event) {
    if (event.type === "click" && Date.now() - lastPress < 600) { return; }
    if (event.type === "pointerup") {
      if (event.pointerType === "mouse" && event.button !== 0) { return; }
      lastPress = Date.now();
    }
    if (!current) { return; }
    if (!cancelArmed) {
      // Two taps: a stray touch never cancels a sale the customer is paying.
      armCancel(true);
      cancelArmed = setTimeout(function () {
        cancelArmed = null;
        armCancel(false);
      }, 4000);
      return;
    }
    clearTimeout(cancelArmed);
    cancelArmed = null;
    armCancel(false);
    send("POST", current.cancelUrl, {}).then(function (result) {
      if (result.status === 200) { showError(saleError, ""); render(result.data, false); return; }
      showError(saleError, result.data.message || t("error"));
      schedule(0);
    }, function (error) {
      if (error && error.message === "signed out") { return; }
      showError(saleError, t("offline-charge").split(":")[0]);
      offline(true);
    });
  }
  cancelButton.addEventListener("pointerup", onCancel);
  cancelButton.addEventListener("click", onCancel);

  $("[data-new-sale]", saleBox).addEventListener("click", closeSale);

  /* -- sound: a short beep made with WebAudio (no file to download) ------------------------------ */
  var audio = null;
  function unlockAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    try {
      if (!audio) { audio = new Context(); }
      if (audio.state === "suspended") { audio.resume(); }
    } catch (e) { audio = null; }
  }
  document.addEventListener("pointerdown", unlockAudio, { passive: true });

  function tone(frequency, start, length) {
    var osc = audio.createOscillator();
    var gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, audio.currentTime + start);
    gain.gain.exponentialRampToValueAtTime(0.35, audio.currentTime + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + start + length);
    osc.connect(gain);
    gain.connect(audio.destination);
    osc.start(audio.currentTime + start);
    osc.stop(audio.currentTime + start + length + 0.05);
  }

  function beep(kind) {
    root.setAttribute("data-last-sound", kind);  // visible to tests and assistive tooling
    if (!audio) { unlockAudio(); }
    if (!audio) { return; }
    try {
      if (kind === "paid") { tone(880, 0, 0.18); tone(1318.5, 0.2, 0.35); }
      else if (kind === "received") { tone(660, 0, 0.25); }
      else { tone(440, 0, 0.2); tone(440, 0.3, 0.2); }
    } catch (e) { /* sound is a nicety */ }
  }

  /* -- start: come back to the sale in progress ----------------------------------------------- */
  renderEntry();
  var saved = remembered();
  if (saved && saved.id && saved.detailsUrl) {
    openSale(saved, true);  // at once, from the copy: works even while offline
    fetchDetails().then(function (details) {
      if (details && current && current.id === details.id) { render(details, false); }
    }, function () { offline(true); });
  }

  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register(root.getAttribute("data-sw-url"), { scope: "/pos" })
      .catch(function () { /* the POS works without it */ });
  }
})();
