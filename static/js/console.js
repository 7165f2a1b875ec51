// The operators' dashboard refreshes itself (htmx, every few seconds). A refresh replaces
// the figures' links and tables: while the keyboard's focus is among them, or the page is
// not shown, this refresh is skipped (the next one brings everything), so a keyboard user
// tabbing through the dashboard is never thrown back to the top of the page.
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!target || target.id !== "dashboard") return;
  if (document.hidden || target.contains(document.activeElement)) {
    event.detail.shouldSwap = false;
  }
});
