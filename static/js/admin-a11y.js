// Names for the admin inputs Django renders without a label of their own
// (WCAG 1.3.1, 4.1.2), checked by kreo/tests/test_pages_browser.py:
// - the split date and time inputs (a MultiWidget's label has no "for"):
//   "Starts at: date", "Starts at: time";
// - the inputs of a tabular inline, labelled only by their column heading:
//   "Role, row 2", "Delete?, row 2".
(function () {
  "use strict";
  function unnamed(input) {
    return !(input.labels && input.labels.length) &&
      !input.hasAttribute("aria-label") && input.type !== "hidden";
  }
  document.querySelectorAll("p.datetime").forEach(function (box) {
    var row = box.closest(".form-row, .fieldBox, td");
    var label = row && row.querySelector("label");
    var field = label ? label.textContent.replace(/:\s*$/, "").trim() : "";
    box.querySelectorAll("input").forEach(function (input, index) {
      if (!unnamed(input)) return;
      var part = index === 0 ? "date" : "time";
      input.setAttribute("aria-label", field ? field + ": " + part : part);
    });
  });
  document.querySelectorAll(".tabular table").forEach(function (table) {
    var headings = Array.prototype.map.call(
      table.querySelectorAll("thead th"),
      function (th) { return th.textContent.trim(); }
    );
    table.querySelectorAll("tbody tr").forEach(function (tr, rowIndex) {
      Array.prototype.forEach.call(tr.children, function (cell, column) {
        var heading = headings[column];
        if (!heading) return;
        cell.querySelectorAll("input, select, textarea").forEach(function (input) {
          if (unnamed(input)) {
            input.setAttribute("aria-label", heading + ", row " + (rowIndex + 1));
          }
        });
      });
    });
  });
})();
