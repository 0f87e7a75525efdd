/* On the checkout page when a shop shows it in its modal (btcpay.js): tell the shop page the
 * invoice's status ({invoiceId, status}) on load and whenever it changes, and offer a close
 * button that posts "close". Messages go only to the store's website origin (the page's
 * data-parent-origin), the one origin the page's CSP lets frame it. */
(function () {
  "use strict";
  var me = document.currentScript;
  var target = me && me.getAttribute("data-parent-origin");
  if (!target || window.parent === window) { return; }
  var sent = "";

  function post(message) {
    try { window.parent.postMessage(message, target); } catch (e) { /* parent gone */ }
  }

  function report() {
    var el = document.getElementById("checkout");
    if (!el) { return; }
    var status = el.getAttribute("data-status");
    if (status && status !== sent) {
      sent = status;
      post({ invoiceId: el.getAttribute("data-id"), status: status });
    }
  }

  function addClose() {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "modal-close";
    button.textContent = me.getAttribute("data-close-text") || "Close";
    button.addEventListener("click", function () { post("close"); });
    document.body.insertBefore(button, document.body.firstChild);
  }

  document.documentElement.classList.add("in-modal");
  addClose();
  report();
  // checkout.js swaps <main id="checkout"> when the state changes: watch the whole body.
  new MutationObserver(report).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"]
  });
}());
