/*
 * sessionwarden client helper. Load it as a file (<script src=".../sessionwarden.js" nonce="...">):
 * it has no inline code and no eval, so it runs under the strict Content-Security-Policy.
 *
 * 1. CSRF: fetch() calls with an unsafe method to THIS origin carry the token from
 *    <meta name="csrf-token" content="...">. Other origins never see it: a token sent
 *    elsewhere is a token leaked.
 * 2. Idle timeout: with <meta name="session-idle-timeout" content="SECONDS"> (the session's own:
 *    a remembered session's is the remember one, Session.lifetime.idle) the page warns
 *    <meta name="session-warn-before" content="SECONDS"> (default 60) before the server ends
 *    the session, offering "Stay signed in", which requests <meta name="session-keepalive-url">
 *    (default: this page) with GET. That URL must answer 2xx only to a signed-in session: an
 *    error or a redirect (to the sign-in page) means the session is over, and the page says so.
 *    Only requests reset the countdown, not mouse moves: the server sees requests, so only they
 *    extend the session. Requests to the passive paths of <meta name="session-passive-paths"
 *    content="/poll,/api/heartbeat"> (Policy.passive_paths, comma-separated) do not: the
 *    server does not count them as use either.
 */
(function () {
  "use strict";

  var SAFE = ["GET", "HEAD", "OPTIONS"]; // the methods the server does not check
  var HEADER = "X-CSRF-Token";

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : null;
  }

  function seconds(name, fallback) {
    var n = Number(meta(name));
    return meta(name) !== null && isFinite(n) && n > 0 ? n : fallback;
  }

  // Path prefixes matched like the server's: "/poll" covers "/poll" and "/poll/...".
  var passive = (meta("session-passive-paths") || "").split(",").map(function (p) {
    return p.trim().replace(/\/+$/, "");
  }).filter(function (p) { return p.charAt(0) === "/"; });

  function isPassive(url) {
    var path;
    try {
      path = new URL(url, window.location.href).pathname;
    } catch (e) {
      return false;
    }
    return passive.some(function (p) {
      return path === p || path.indexOf(p + "/") === 0;
    });
  }

  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      return false; // unparseable: treat as foreign, never attach the token
    }
  }

  // ---- CSRF header on same-origin unsafe fetches -------------------------------------------
  var token = meta("csrf-token");
  var originalFetch = window.fetch ? window.fetch.bind(window) : null;

  function wrappedFetch(input, init) {
    var isRequest = typeof Request !== "undefined" && input instanceof Request;
    var url = isRequest ? input.url : String(input);
    var method = ((init && init.method) || (isRequest ? input.method : "GET")).toUpperCase();
    var local = sameOrigin(url);
    if (token && local && SAFE.indexOf(method) === -1) {
      // Start from the headers the caller meant to send, then add ours unless already set.
      var headers = new Headers((init && init.headers) || (isRequest ? input.headers : undefined));
      if (!headers.has(HEADER)) headers.set(HEADER, token);
      init = Object.assign({}, init, { headers: headers });
    }
    var pending = originalFetch(input, init);
    if (local && !isPassive(url)) {
      // A same-origin response means the server saw us: its idle clock restarted (a passive
      // path's does not restart it).
      pending.then(function (r) { if (r.ok) restartCountdown(); }, function () {});
    }
    return pending;
  }

  if (originalFetch) window.fetch = wrappedFetch;

  // ---- Idle-timeout warning ----------------------------------------------------------------
  var idle = seconds("session-idle-timeout", 0);
  var warnBefore = seconds("session-warn-before", 60);
  var keepaliveUrl = meta("session-keepalive-url") || window.location.pathname + window.location.search;
  var warnTimer = null;
  var expireTimer = null;

  // setTimeout fires at once for a delay beyond 2^31 - 1 ms (about 24.8 days), and a
  // remembered session's idle timeout may be longer: a longer wait is made of shorter ones.
  var MAX_DELAY = 2147483647;
  function after(ms, fn) {
    var timer = { id: null };
    function wait(left) {
      var step = Math.min(left, MAX_DELAY);
      timer.id = setTimeout(function () { if (left > step) wait(left - step); else fn(); }, step);
    }
    wait(Math.max(0, ms));
    return timer;
  }
  function cancel(timer) {
    if (timer) clearTimeout(timer.id);
  }
  var banner = null;
  var message = null;
  var button = null;

  function buildBanner() {
    banner = document.createElement("div");
    banner.className = "sessionwarden-banner";
    banner.setAttribute("role", "alert"); // read out by screen readers as soon as it appears
    banner.hidden = true;
    // CSSOM assignments are allowed under CSP (style attributes in markup are not).
    banner.style.position = "fixed";
    banner.style.left = banner.style.right = banner.style.bottom = "0";
    banner.style.padding = "1em";
    banner.style.background = "#fff3cd";
    banner.style.color = "#000";
    banner.style.zIndex = "2147483647";
    message = document.createElement("span");
    button = document.createElement("button");
    button.type = "button";
    button.textContent = "Stay signed in";
    button.style.marginLeft = "1em";
    button.addEventListener("click", keepAlive);
    banner.appendChild(message);
    banner.appendChild(button);
    document.body.appendChild(banner);
  }

  function show(text, withButton) {
    if (!banner) buildBanner();
    message.textContent = text;
    button.hidden = !withButton;
    banner.hidden = false;
    if (withButton) button.focus();
  }

  function warn() {
    var left = warnBefore < 90
      ? Math.max(1, Math.round(warnBefore)) + " second" + (Math.round(warnBefore) === 1 ? "" : "s")
      : Math.round(warnBefore / 60) + " minutes";
    show("You will be signed out in about " + left + " because of inactivity.", true);
  }

  function expired() {
    show("You have been signed out because of inactivity. Reload the page to sign in again.", false);
  }

  function ended() {
    cancel(warnTimer);
    cancel(expireTimer);
    show("You have been signed out. Reload the page to sign in again.", false);
  }

  function restartCountdown() {
    if (!idle) return;
    cancel(warnTimer);
    cancel(expireTimer);
    if (banner) banner.hidden = true;
    // The server may coalesce last-seen writes for up to a minute; warning early covers that.
    warnTimer = after((idle - warnBefore) * 1000, warn);
    expireTimer = after(idle * 1000, expired);
  }

  function keepAlive() {
    if (!sameOrigin(keepaliveUrl)) return; // a misconfigured URL must not leak the cookie's use
    button.disabled = true;
    // A redirect is not followed: it leads to the sign-in page, whose 200 would look like success.
    var init = { method: "GET", credentials: "same-origin", cache: "no-store", redirect: "manual" };
    wrappedFetch(keepaliveUrl, init)
      .then(function (r) { if (!r.ok) ended(); }, ended)
      .then(function () { button.disabled = false; });
  }

  function start() {
    if (idle && originalFetch) restartCountdown();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
