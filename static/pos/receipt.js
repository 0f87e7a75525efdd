/* Receipt page: the Print button, and a page length that fits the receipt on roll paper. */
(function () {
  "use strict";
  var MM_PER_PX = 25.4 / 96;

  function fitPage() {
    var receipt = document.querySelector(".receipt");
    var button = document.querySelector("[data-print]");
    if (!receipt || !button || !("adoptedStyleSheets" in document)) { return; }
    var width = button.getAttribute("data-paper") === "58" ? 58 : 80;
    // The printed receipt is as long as its content (thermal paper is a roll).
    var length = Math.ceil(receipt.scrollHeight * MM_PER_PX) + 12;
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync("@page receipt" + width + " { size: " + width + "mm " + Math.max(length, 80) + "mm; margin: 2mm; }");
      document.adoptedStyleSheets = [sheet];
    } catch (e) { /* the static @page rule applies */ }
  }

  window.addEventListener("beforeprint", fitPage);
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-print]")) {
      fitPage();
      window.print();
    }
  });
})();
