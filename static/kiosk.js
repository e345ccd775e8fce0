// The kiosk's only script: keeps the clock, and after an idle spell forgets the last person.
(function () {
  "use strict";
  var body = document.body;
  var idleSeconds = parseInt(body.getAttribute("data-idle") || "0", 10);
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

  function pristine() {
    // Home, unfiltered, default text size and language: nothing of anybody is on screen.
    return location.pathname === homeUrl && !location.search &&
      document.querySelector("[data-pristine]") !== null &&
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
    if (idleSeconds > 0 && idle >= idleSeconds && !pristine()) { lastInput = Date.now(); reset(); }
    // Refresh the idle home screen every five minutes so finished events drop off.
    else if (idle >= 300 && pristine()) { lastInput = Date.now(); location.replace(homeUrl); }
  }

  ["pointerdown", "keydown", "touchstart", "wheel", "input"].forEach(function (type) {
    window.addEventListener(type, function () { lastInput = Date.now(); }, { passive: true, capture: true });
  });
  if (idleSeconds > 0) { setInterval(checkIdle, 1000); }
  setInterval(tickClock, 10000);
  tickClock();
})();
