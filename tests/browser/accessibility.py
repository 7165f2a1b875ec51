"""What the accessibility tests check on a page, in the page itself.

- `axe_violations`: Deque's axe-core (vendored in vendor/axe-core, MPL 2.0) run on the
  page as it stands, WCAG 2.x A and AA rules plus axe's best practices; the violations
  of serious or critical impact. axe is handed to the page through the DevTools
  protocol, which the site's Content-Security-Policy does not govern, so the page runs
  under the same policy as ever.
- `keyboard_walk`: presses Tab through the page and records, for every control that
  takes the focus, whether it shows that it has it (an outline or a focus ring drawn
  with box-shadow); answers the controls never reached and those reached without a
  visible focus.
- `horizontal_overflow`: how many pixels the page is wider than its viewport.
"""

from pathlib import Path

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()

RUN_AXE = """async () => {
  const result = await axe.run(document, {
    runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
    resultTypes: ["violations"],
  });
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + ": " + n.failureSummary.split("\\n").slice(1, 2).join(""))}));
}"""

# Controls a keyboard user must be able to reach: visible, enabled, not taken out of the
# tab order. Radio groups take one Tab stop (the arrows move inside), so only the checked
# radio of a group (or its first, when none is) is expected.
CONTROLS = """() => {
  const selector = 'a[href], button, input:not([type="hidden"]), select, textarea, summary, [tabindex]';
  const seen = new Set();
  const out = [];
  document.querySelectorAll(selector).forEach((el) => {
    if (el.disabled || el.closest("[inert], dialog:not([open]), [hidden]")) return;
    if (el.getAttribute("tabindex") === "-1") return;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    const shown = box.width > 0 && box.height > 0 && style.visibility !== "hidden";
    // A control drawn invisibly over a label (segmented buttons) counts by its label.
    if (!shown && !(el.matches("input") && el.closest("label"))) return;
    if (el.type === "radio" && el.name) {
      if (seen.has(el.form + el.name)) return;
      const group = Array.from(document.querySelectorAll('input[type="radio"][name="' + el.name + '"]'));
      el = group.find((r) => r.checked) || group[0];
      seen.add(el.form + el.name);
    }
    out.push(el);
  });
  out.forEach((el, i) => el.setAttribute("data-qt-control", String(i)));
  return out.length;
}"""

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const ring = style.boxShadow && style.boxShadow !== "none";
  // A visually hidden input (segmented controls) shows its focus on its label.
  let labelShows = false;
  const label = el.closest("label");
  if (label) {
    const l = getComputedStyle(label);
    labelShows = (l.outlineStyle !== "none" && parseFloat(l.outlineWidth) > 0) || (l.boxShadow && l.boxShadow !== "none");
  }
  const name = (el.getAttribute("aria-label") || el.innerText || el.value || el.name || el.id || el.tagName).trim().slice(0, 40);
  return {id: el.getAttribute("data-qt-control"), visible: outline || ring || labelShows, name: el.tagName.toLowerCase() + " " + name};
}"""


def axe_violations(page) -> list[dict]:
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.evaluate(AXE)
    return page.evaluate(RUN_AXE)


def keyboard_walk(page, max_presses: int = 400) -> tuple[list[str], list[str]]:
    """(controls never reached by Tab, controls focused without a visible focus)."""
    expected = page.evaluate(CONTROLS)
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    page.locator("body").focus()
    reached, invisible = set(), []
    first = None
    for _ in range(min(max_presses, expected * 2 + 10)):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            continue
        key = (focused["id"], focused["name"])
        if key == first:
            break  # round the page once
        first = first or key
        if focused["id"] is not None:
            reached.add(focused["id"])
        if not focused["visible"]:
            invisible.append(focused["name"])
    names = page.evaluate(
        "() => Array.from(document.querySelectorAll('[data-qt-control]')).map(el => "
        "[el.getAttribute('data-qt-control'), el.tagName.toLowerCase() + ' ' + "
        "(el.getAttribute('aria-label') || el.innerText || el.name || el.id || '').trim().slice(0, 40)])"
    )
    missed = [name for control, name in names if control not in reached]
    return missed, sorted(set(invisible))


def horizontal_overflow(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
