// The matrix page, enhanced: every few seconds (the body's data-refresh) the parts marked
// data-live are fetched again and replaced in place, so the reader keeps the scroll position,
// the filter and the page. Without JavaScript the page reloads itself instead (<noscript>).
(function () {
  "use strict";
  var every = Number(document.body.getAttribute("data-refresh")) || 0;
  if (!every || !window.fetch || !window.DOMParser) {
    return;
  }
  function positions(root) {
    return Array.prototype.map.call(root.querySelectorAll(".scroll"), function (box) {
      return [box.scrollLeft, box.scrollTop];
    });
  }
  function update() {
    window
      .fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) {
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), function (old) {
          var next = fresh.getElementById(old.id);
          if (!next) {
            return;
          }
          var kept = positions(old);
          var imported = document.importNode(next, true);
          old.replaceWith(imported);
          Array.prototype.forEach.call(imported.querySelectorAll(".scroll"), function (box, i) {
            if (kept[i]) {
              box.scrollLeft = kept[i][0];
              box.scrollTop = kept[i][1];
            }
          });
        });
        document.body.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function () {});
  }
  window.setInterval(update, every * 1000);
})();
