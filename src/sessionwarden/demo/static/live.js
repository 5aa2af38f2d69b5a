// The account page's live panel: a WebSocket to /ws that greets with the signed-in user's name
// and then sends the session's recent activity. When the session ends anywhere (signed out in
// another browser, revoked from the sessions page, timed out), the server closes the socket
// with code 1008 and the panel says so (reason "reauthentication required": the risk check
// demands that the user sign in again).
(function () {
  "use strict";
  var panel = document.getElementById("live-panel");
  if (!panel || !window.WebSocket) {
    return;
  }
  var status = document.getElementById("live-status");
  var feed = document.getElementById("live-feed");
  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var socket = new WebSocket(scheme + "//" + window.location.host + "/ws");

  function show(text, state) {
    status.textContent = text;
    panel.setAttribute("data-state", state);
  }

  function render(activity) {
    feed.textContent = "";
    activity.slice(-5).reverse().forEach(function (a) {
      var item = document.createElement("li");
      var when = new Date(a.at * 1000).toLocaleTimeString();
      item.textContent = when + "  " + a.method + " " + a.path + "  from " + a.ip;
      feed.appendChild(item);
    });
  }

  socket.addEventListener("message", function (event) {
    var message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (typeof message.user === "string") {
      show("connected as " + message.user, "open");
    }
    if (Array.isArray(message.activity)) {
      render(message.activity);
    }
  });
  socket.addEventListener("close", function (event) {
    var text = "connection closed";
    if (event.code === 1008) {
      text = event.reason === "reauthentication required"
        ? "connection closed: sign in again"
        : "connection closed: session ended";
    }
    show(text, "closed");
  });
})();
