// Live progress of one task run (bulk import, embedding, training) on its admin page.
// Polls the run's JSON every second while it is queued or running; no page reload.
(function () {
  "use strict";
  var box = document.getElementById("visrec-run");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-url");
  var busy = function (status) { return status === "queued" || status === "running"; };
  var labels = { queued: "Queued", running: "Running", done: "Done", failed: "Failed", skipped: "Skipped" };

  function render(run) {
    box.querySelector(".visrec-status").textContent = labels[run.status] || run.status;
    box.querySelector("progress").value = run.progress;
    box.querySelector(".visrec-count").textContent = run.done + " / " + run.total;
    box.querySelector(".visrec-message").textContent = run.message;
    var report = box.querySelector(".visrec-report");
    if (run.report_url) { report.querySelector("a").href = run.report_url; report.hidden = false; }
    box.setAttribute("data-status", run.status);
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (run) {
        render(run);
        if (busy(run.status)) { window.setTimeout(poll, 1000); }
        else if (run.status === "done" && box.hasAttribute("data-reload-done")) { window.location.reload(); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  if (busy(box.getAttribute("data-status"))) { window.setTimeout(poll, 500); }
})();
