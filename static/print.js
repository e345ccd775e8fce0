// The card pages' "打印" button: CSP allows no inline handlers, so it is wired here.
(function () {
  "use strict";
  if (window.kioskPrintReady) { return; }
  window.kioskPrintReady = true;
  function show() {
    document.querySelectorAll("[data-print]").forEach(function (b) { b.hidden = false; });
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-print]") : null;
    if (button) { e.preventDefault(); window.print(); }
  });
  document.addEventListener("htmx:afterSwap", show);
  show();
})();
