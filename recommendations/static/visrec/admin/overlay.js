// "Where they agree" in the similar-items preview: loads a neighbour's heat overlay on demand,
// under its row, or shows why it cannot be drawn. A worker draws it: while the view answers
// 202 ("drawing"), the overlay is asked for again, TRIES times at most, WAIT_MS apart.
// Without JavaScript the link opens the PNG (or the "drawing…" text: reload it).
(function () {
  "use strict";
  if (!window.fetch) { return; }
  var TRIES = 90;
  var WAIT_MS = 1000;

  function later(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  // The overlay's PNG as a blob; rejects with the reason to show.
  function poll(url, status, tries, started) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (response.status === 202) {
        if (tries <= 1) {
          return Promise.reject("The overlay is still being drawn (the workers may be busy): " +
            "click “Where they agree” again in a while.");
        }
        return response.text().then(function (text) {
          var seconds = Math.round((Date.now() - started) / 1000);
          status.textContent = (text || "Drawing where the two photos agree…") + " (" + seconds + " s)";
          return later(WAIT_MS).then(function () { return poll(url, status, tries - 1, started); });
        });
      }
      if (response.ok && type.indexOf("image/png") === 0) { return response.blob(); }
      return response.text().then(function (text) {
        var plain = type.indexOf("text/plain") === 0 && text;
        return Promise.reject(plain || "The overlay cannot be drawn now (HTTP " + response.status + ").");
      });
    });
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.visrec-overlay-link");
    if (!link) { return; }
    event.preventDefault();
    var box = document.getElementById(link.getAttribute("data-target"));
    var row = box.closest("tr");
    if (!row.hidden && box.getAttribute("data-loaded")) { row.hidden = true; return; }
    row.hidden = false;
    if (box.getAttribute("data-loaded") || box.getAttribute("data-drawing")) { return; }
    var status = box.querySelector(".visrec-overlay-status");
    var image = box.querySelector("img");
    status.className = "visrec-overlay-status help";
    status.textContent = "Drawing where the two photos agree…";
    box.setAttribute("data-drawing", "1");
    poll(link.href, status, TRIES, Date.now())
      .then(function (blob) {
        image.src = URL.createObjectURL(blob);
        image.hidden = false;
        status.textContent = "Left: this product; right: the neighbour. Hot (red) = the regions that agree most.";
        box.setAttribute("data-loaded", "1");
      })
      .catch(function (message) {
        status.className = "visrec-overlay-status errornote";
        status.textContent = typeof message === "string" ? message : "The overlay cannot be loaded now.";
      })
      .then(function () { box.removeAttribute("data-drawing"); });
  });
})();
