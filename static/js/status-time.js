// Adds the reader's own time beside each UTC time of the status page.
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var when = new Date(el.getAttribute("datetime"));
  if (isNaN(when)) { return; }
  var local = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  el.title = local + " (your time)";
  el.insertAdjacentText("afterend", " (" + local + " your time)");
});
