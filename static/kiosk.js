// The kiosk's only script: keeps the clock, and after an idle spell forgets the last person.
(function () {
  "use strict";
  var body = document.body;
  var stationIdle = parseInt(body.getAttribute("data-idle") || "0", 10);
  var resetUrl = body.getAttribute("data-reset-url");
  var homeUrl = body.getAttribute("data-home-url") || "/";
  var lastInput = Date.now();

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tickClock() {
    var el = document.querySelector("#clock .clock-time");
    if (!el) { return; }
    // The station's time zone, not the browser's: they differ when a kiosk PC is set up wrong.
    var tz = document.getElementById("clock").getAttribute("data-tz") || undefined;
    try {
      el.textContent = new Date().toLocaleTimeString("zh-CN", { timeZone: tz, hour: "2-digit", minute: "2-digit", hour12: false });
    } catch (e) {
      var d = new Date(); el.textContent = pad(d.getHours()) + ":" + pad(d.getMinutes());
    }
  }

  function idleLimit() {
    // A screen may ask for its own limit (a volunteer's screens: 60 s); else the station's.
    var own = document.querySelector("#screen [data-idle]");
    return own ? parseInt(own.getAttribute("data-idle"), 10) : stationIdle;
  }

  function pristine() {
    // The unfiltered home or a sign-in code screen, default text size and language:
    // nothing of anybody is on screen.
    return document.querySelector("[data-pristine]") !== null &&
      !document.documentElement.classList.contains("text-large") &&
      document.documentElement.lang === "zh-CN";
  }

  function csrfToken() {
    try { return JSON.parse(body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }

  function reset() {
    try { sessionStorage.clear(); } catch (e) { /* private mode */ }
    var go = function () { location.replace(homeUrl); };
    if (!resetUrl) { go(); return; }
    fetch(resetUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } })
      .then(go, go);
  }

  function checkIdle() {
    var idle = (Date.now() - lastInput) / 1000;
    var limit = idleLimit();
    if (limit > 0 && idle >= limit && !pristine()) { lastInput = Date.now(); reset(); }
    // Refresh the idle home screen every five minutes so finished events drop off.
    else if (idle >= 300 && pristine() && location.pathname === homeUrl) { lastInput = Date.now(); location.replace(homeUrl); }
  }

  // Print buttons (a pickup slip, a passbook page): no inline script under the CSP.
  document.addEventListener("click", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-print]")) { window.print(); }
  });

  // The on-screen PIN keypad: digits into the form's PIN field.
  document.addEventListener("click", function (ev) {
    var key = ev.target.closest && ev.target.closest("[data-key]");
    if (!key) { return; }
    var input = key.closest("form").querySelector(".pin-input");
    var k = key.getAttribute("data-key");
    if (k === "back") { input.value = input.value.slice(0, -1); }
    else if (input.value.length < 6) { input.value += k; }
    var err = document.getElementById("pin-err");  // an old "wrong PIN" goes once they type again
    if (err) { err.remove(); }
  });

  // "Done" buttons at the kiosk end the visit like the idle reset, without adding history;
  // forms marked data-once can't be sent twice by a double tap.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.hasAttribute("data-reset")) { ev.preventDefault(); ev.stopPropagation(); reset(); return; }
    if (form.hasAttribute("data-once")) {
      if (form.getAttribute("data-sent")) { ev.preventDefault(); return; }
      form.setAttribute("data-sent", "1");
    }
  }, true);

  // The card reader types like a keyboard: keep the scan field focused on the card screen.
  function keepFocus() {
    var input = document.querySelector("[data-keep-focus]");
    if (input && document.activeElement !== input) { input.focus(); }
  }
  document.addEventListener("htmx:afterSettle", keepFocus);
  setInterval(keepFocus, 1000);

  ["pointerdown", "keydown", "touchstart", "wheel", "input"].forEach(function (type) {
    window.addEventListener(type, function () { lastInput = Date.now(); }, { passive: true, capture: true });
  });
  if (stationIdle > 0) { setInterval(checkIdle, 1000); }
  setInterval(tickClock, 10000);
  tickClock();
})();
