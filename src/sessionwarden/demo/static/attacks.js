/*
 * Live demonstrations on /attacks. Loaded as a file with the page's CSP nonce and WITHOUT defer,
 * so the securitypolicyviolation listener exists before the unsafe comments below are parsed.
 */
(function () {
  "use strict";

  var violations = [];
  var ready = false;

  function describe(e) {
    var what = e.blockedURI || "inline";
    var directive = e.effectiveDirective || e.violatedDirective || "?";
    var sample = e.sample ? " \u2014 \u201c" + e.sample.slice(0, 60) + "\u201d" : "";
    return "Blocked " + what + " (" + directive + ")" + sample;
  }

  function renderViolation(text) {
    var log = document.getElementById("csp-log");
    var count = document.getElementById("csp-count");
    if (!log) return;
    var placeholder = log.querySelector(".empty");
    if (placeholder) placeholder.remove();
    var li = document.createElement("li");
    li.textContent = text;
    log.appendChild(li);
    if (count) count.textContent = String(violations.length);
  }

  document.addEventListener("securitypolicyviolation", function (e) {
    var text = describe(e);
    violations.push(text);
    if (ready) renderViolation(text);
  });

  function checkXss() {
    var status = document.getElementById("xss-status");
    if (!status) return;
    if (window.__xss !== undefined || document.title === "pwned") {
      status.textContent = "Yes! An injected script ran.";
      status.className = "verdict verdict-bad";
    } else {
      status.textContent = "No: nothing injected has executed.";
      status.className = "verdict verdict-ok";
    }
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function startCountdown() {
    var out = document.getElementById("idle-countdown");
    var phase = document.getElementById("idle-phase");
    var button = document.getElementById("keepalive");
    if (!out) return;
    var idle = Number(out.getAttribute("data-idle")) || 0;
    var warn = Number(out.getAttribute("data-warn")) || 60;
    var deadline = Date.now() + idle * 1000;

    function tick() {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      out.textContent = Math.floor(left / 60) + ":" + pad(left % 60);
      if (left === 0) {
        phase.textContent = "expired";
        phase.className = "badge badge-danger";
      } else if (left <= warn) {
        phase.textContent = "warning shown";
        phase.className = "badge badge-warn";
      } else {
        phase.textContent = "counting";
        phase.className = "badge";
      }
    }
    tick();
    setInterval(tick, 1000);

    if (button) {
      button.addEventListener("click", function () {
        var url = button.getAttribute("data-url") || "/api/csrf";
        button.disabled = true;
        fetch(url, { credentials: "same-origin", cache: "no-store" })
          .then(function (r) {
            if (r.ok) deadline = Date.now() + idle * 1000;
            else phase.textContent = "signed out";
          })
          .catch(function () {})
          .then(function () { button.disabled = false; tick(); });
      });
    }
  }

  function showCookie() {
    var out = document.getElementById("doc-cookie");
    if (out) {
      var code = document.createElement("code");
      code.textContent = JSON.stringify(document.cookie);
      out.textContent = "";
      out.appendChild(code);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    ready = true;
    violations.forEach(renderViolation);
    checkXss();
    showCookie();
    startCountdown();
  });
  // Violations and onerror handlers can fire after DOMContentLoaded (images load later).
  window.addEventListener("load", checkXss);
})();
