// Upload form: the size limit checked before sending, a progress bar while
// sending, drag and drop. Without JavaScript the form posts as usual, and the
// server's own checks (size, type from the bytes) always apply.
(function () {
  "use strict";
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    var input = form.querySelector("input[type=file]");
    var box = form.querySelector(".upload-progress");
    var bar = form.querySelector("progress");
    var percent = form.querySelector(".upload-percent");
    var error = form.querySelector(".upload-error");
    var hint = form.querySelector(".drop-hint");
    if (!input || !window.FormData) return;
    var max = parseInt(input.getAttribute("data-max-bytes"), 10);
    var limitText = input.getAttribute("data-limit-text");

    function say(text) {
      error.textContent = text;
      error.hidden = !text;
    }

    function tooBig(file) {
      return file && max && file.size > max;
    }

    input.addEventListener("change", function () {
      var file = input.files[0];
      say(tooBig(file) ? "This file is larger than the " + limitText + " limit." : "");
    });

    hint.hidden = false;
    ["dragenter", "dragover"].forEach(function (name) {
      form.addEventListener(name, function (event) {
        event.preventDefault();
        form.classList.add("dropping");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      form.addEventListener(name, function () { form.classList.remove("dropping"); });
    });
    form.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        input.dispatchEvent(new Event("change"));
      }
    });

    form.addEventListener("submit", function (event) {
      var file = input.files[0];
      if (tooBig(file)) {
        event.preventDefault();
        say("This file is larger than the " + limitText + " limit.");
        input.focus();
        return;
      }
      if (!file) return; // the server says what is missing
      event.preventDefault();
      say("");
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var done = Math.round((e.loaded / e.total) * 100);
        bar.value = done;
        percent.textContent = done + "%";
      });
      request.addEventListener("load", function () {
        // Show the answer as the page (its message is read once, by this
        // request), at the address the server redirected to.
        if (request.responseURL && request.responseURL !== form.action) {
          window.history.replaceState(null, "", request.responseURL);
        }
        document.open();
        document.write(request.responseText);
        document.close();
      });
      request.addEventListener("error", function () {
        box.hidden = true;
        say("The upload did not reach the server. Check the connection and try again.");
      });
      box.hidden = false;
      form.querySelector("button[type=submit]").disabled = true;
      request.send(new FormData(form));
    });
  });
})();
