// Meridian console: live updates of the fleet page from /fleet/events (server-sent events).
// Every page works without this script; it only keeps the fleet page current.
(function () {
  "use strict";
  var map = document.getElementById("fleet-map");
  if (!map || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var source = new EventSource("/fleet/events");
  var SVG = "http://www.w3.org/2000/svg";
  function group(state) {
    var g = map.querySelector('g[data-state="' + CSS.escape(state) + '"]');
    if (!g) {
      g = document.createElementNS(SVG, "g");
      g.setAttribute("data-state", state);
      g.setAttribute("class", "s-" + state);
      map.appendChild(g);
    }
    return g;
  }
  function recount() {
    document.querySelectorAll("[data-count-state]").forEach(function (cell) {
      var g = map.querySelector('g[data-state="' + CSS.escape(cell.getAttribute("data-count-state")) + '"]');
      cell.textContent = String(g ? g.childElementCount : 0);
    });
  }
  function apply(change) {
    var point = document.getElementById("m-" + change.id);
    if (change.state === "removed") {
      if (point) { point.remove(); }
    } else {
      if (!point) {
        point = document.createElementNS(SVG, "circle");
        point.setAttribute("id", "m-" + change.id);
        point.setAttribute("cx", (change.lon + 180).toFixed(1));
        point.setAttribute("cy", (90 - change.lat).toFixed(1));
      }
      group(change.state).appendChild(point);
    }
    document.querySelectorAll('[data-site-state="' + CSS.escape(change.id) + '"]').forEach(function (cell) {
      cell.textContent = change.state;
      cell.className = "s-" + change.state;
    });
    recount();
  }
  source.addEventListener("site", function (e) {
    try { apply(JSON.parse(e.data)); } catch (err) { /* a malformed event changes nothing */ }
  });
  source.addEventListener("reload", function () { window.location.reload(); });
  source.onopen = function () { if (status) { status.textContent = "Live"; } };
  source.onerror = function () { if (status) { status.textContent = "Reconnecting…"; } };
}());
