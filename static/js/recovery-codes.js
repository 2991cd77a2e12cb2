// Copy and print buttons of the recovery-codes page. They stay hidden
// without JavaScript; the download link and the list work without it.
(function () {
  "use strict";
  var status = document.querySelector(".copied");
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var list = document.getElementById(button.getAttribute("data-copy"));
      var codes = Array.prototype.map.call(list.querySelectorAll("code"), function (c) {
        return c.textContent;
      });
      navigator.clipboard.writeText(codes.join("\n") + "\n").then(
        function () { status.textContent = "Copied."; },
        function () { status.textContent = "Could not copy: use Download instead."; }
      );
    });
  });
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
