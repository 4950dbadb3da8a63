// Search by photo: a dropped or chosen photo is previewed and submitted with the form.
(function () {
  "use strict";
  var form = document.querySelector("[data-photo-search]");
  if (!form) { return; }
  var zone = form.querySelector("[data-drop-zone]");
  var input = form.querySelector("input[type=file]");
  var preview = form.querySelector("[data-preview]");

  function show(file) {
    if (!file || !preview || !window.URL) { return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }

  input.addEventListener("change", function () { show(input.files[0]); });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("is-dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("is-dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) { return; }
    input.files = files;
    show(files[0]);
    form.submit();
  });
})();
