// Live progress of embedding and training runs on the recommendation dashboard.
// Polls the dashboard's JSON endpoint every 2 s while a run is queued or running.
(function () {
  "use strict";
  var box = document.getElementById("visrec-tasks");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-url");
  var busy = function (status) { return status === "queued" || status === "running"; };

  function render(run) {
    var row = box.querySelector('tr[data-run="' + run.id + '"]');
    if (!row) { return false; }
    row.querySelector(".visrec-status").textContent = run.status;
    row.querySelector("progress").value = run.progress;
    row.querySelector(".visrec-count").textContent = run.done + " / " + run.total;
    row.querySelector(".visrec-message").textContent = run.message;
    return true;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (data) {
        var unknown = false, running = false;
        data.runs.forEach(function (run) {
          if (!render(run)) { unknown = true; }
          if (busy(run.status)) { running = true; }
        });
        if (unknown) { window.location.reload(); return; }  // a run started elsewhere: redraw the table
        if (running) { window.setTimeout(poll, 2000); }
      })
      .catch(function () { window.setTimeout(poll, 10000); });
  }

  var statuses = Array.prototype.map.call(box.querySelectorAll(".visrec-status"), function (td) { return td.textContent; });
  if (statuses.some(busy)) { window.setTimeout(poll, 1000); }
})();
