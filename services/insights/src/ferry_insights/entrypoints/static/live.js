// Live updates: the server says "changed" over server-sent events; the page fetches its own
// <main> again and swaps it in. No build step, no library.
(function () {
  "use strict";
  var status = document.getElementById("live");
  var busy = false;
  function say(text) { if (status) { status.textContent = text; } }
  async function refresh() {
    if (busy) { return; }
    var active = document.activeElement;
    if (active && active.form && active.value) { return; }  // someone is typing in a form
    busy = true;
    try {
      var response = await fetch(window.location.href, {
        headers: { "X-Ferry-Fragment": "1" }, credentials: "same-origin"
      });
      if (response.ok) {
        var holder = document.createElement("div");
        holder.innerHTML = await response.text();
        var fresh = holder.querySelector("main");
        var main = document.getElementById("main");
        if (fresh && main) { main.replaceWith(fresh); }
      }
    } finally { busy = false; }
  }
  var source = new EventSource("/events");
  source.addEventListener("open", function () { say("live updates: on"); });
  source.addEventListener("changed", function () { refresh(); });
  source.addEventListener("error", function () { say("live updates: reconnecting"); });
})();
