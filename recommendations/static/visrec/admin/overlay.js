// "Where they agree" in the similar-items preview: loads a neighbour's heat overlay on demand,
// under its row, or shows why it cannot be drawn. Without JavaScript the link opens the PNG.
(function () {
  "use strict";
  if (!window.fetch) { return; }
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.visrec-overlay-link");
    if (!link) { return; }
    event.preventDefault();
    var box = document.getElementById(link.getAttribute("data-target"));
    var row = box.closest("tr");
    if (!row.hidden && box.getAttribute("data-loaded")) { row.hidden = true; return; }
    row.hidden = false;
    if (box.getAttribute("data-loaded")) { return; }
    var status = box.querySelector(".visrec-overlay-status");
    var image = box.querySelector("img");
    status.className = "visrec-overlay-status help";
    status.textContent = "Computing where the two photos agree…";
    fetch(link.href, { credentials: "same-origin" })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.ok && type.indexOf("image/png") === 0) { return response.blob(); }
        return response.text().then(function (text) {
          var plain = type.indexOf("text/plain") === 0 && text;
          return Promise.reject(plain || "The overlay cannot be drawn now (HTTP " + response.status + ").");
        });
      })
      .then(function (blob) {
        image.src = URL.createObjectURL(blob);
        image.hidden = false;
        status.textContent = "Left: this product; right: the neighbour. Hot (red) = the regions that agree most.";
        box.setAttribute("data-loaded", "1");
      })
      .catch(function (message) {
        status.className = "visrec-overlay-status errornote";
        status.textContent = typeof message === "string" ? message : "The overlay cannot be loaded now.";
      });
  });
})();
