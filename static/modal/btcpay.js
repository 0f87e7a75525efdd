/* Busan Pay modal checkout for shop pages, loaded as <script src="https://<gateway>/modal/btcpay.js">.
 *
 * The same small API as BTCPay Server's modal script, so shop plugins work unchanged:
 *   btcpay.setApiUrlPrefix(url)        the gateway's base URL (default: where this script came from)
 *   btcpay.showInvoice(invoiceId)      open the checkout page in an overlay
 *   btcpay.showFrame() / hideFrame()   show or remove the overlay
 *   btcpay.onModalReceiveMessage(fn)   fn(event) for every message the checkout page posts:
 *                                      {invoiceId, status} on load and on each status change,
 *                                      "close" when the payer closes it
 *   btcpay.onModalWillEnter(fn), btcpay.onModalWillLeave(fn)
 * Only messages from the gateway's origin are passed on. No libraries, no cookies.
 */
(function () {
  "use strict";
  if (window.btcpay && window.btcpay.busanpay) { return; }

  var script = document.currentScript;
  var prefix = script && script.src ? script.src.replace(/\/modal\/btcpay\.js(\?.*)?$/, "") : "";
  var frame = null;
  var receivers = [], enterHooks = [], leaveHooks = [];

  function origin(url) {
    try { return new URL(url, window.location.href).origin; } catch (e) { return ""; }
  }

  function call(list, arg) {
    for (var i = 0; i < list.length; i++) {
      try { list[i](arg); } catch (e) { if (window.console) { window.console.error(e); } }
    }
  }

  function ensureFrame() {
    if (frame) { return frame; }
    frame = document.createElement("iframe");
    frame.name = "btcpay";
    frame.title = "Busan Pay";
    frame.setAttribute("allow", "clipboard-write");
    frame.style.cssText = "position:fixed;inset:0;width:100%;height:100%;border:0;" +
      "z-index:2147483647;background:rgba(0,0,0,.55);display:none";
    return frame;
  }

  function showFrame() {
    var f = ensureFrame();
    if (!f.parentNode) { document.body.appendChild(f); }
    if (f.style.display === "none") { call(enterHooks); }
    f.style.display = "block";
  }

  function hideFrame() {
    if (!frame) { return; }
    call(leaveHooks);
    if (frame.parentNode) { frame.parentNode.removeChild(frame); }
    frame = null;
  }

  function showInvoice(invoiceId) {
    var f = ensureFrame();
    f.src = prefix + "/i/" + encodeURIComponent(invoiceId) + "?view=modal";
    showFrame();
  }

  window.addEventListener("message", function (event) {
    if (!frame || event.source !== frame.contentWindow) { return; }
    if (event.origin !== origin(prefix || window.location.href)) { return; }
    call(receivers, event);
    if (event.data === "close") { hideFrame(); }
  });

  window.btcpay = {
    busanpay: true,
    setApiUrlPrefix: function (url) { prefix = String(url || "").replace(/\/+$/, ""); },
    showInvoice: showInvoice,
    appendAndShowInvoiceFrame: showInvoice,
    showFrame: showFrame,
    hideFrame: hideFrame,
    onModalReceiveMessage: function (fn) { receivers.push(fn); },
    onModalWillEnter: function (fn) { enterHooks.push(fn); },
    onModalWillLeave: function (fn) { leaveHooks.push(fn); }
  };
}());
