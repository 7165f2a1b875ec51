/* QuantumTrades pages: the little behaviour htmx does not give for free. No build step.
 *
 * - qt-live: an htmx extension that drops out-of-band fragments a page has no place for
 *   (a socket streams a trader's orders to every page they have open).
 * - Live sockets: a state badge, and a reconnect for the closes the ws extension leaves alone.
 * - Order ticket: each kind of order shows its own fields (market orders take no price);
 *   a click on a book level fills the price;
 *   B and S focus its Buy and Sell; a market order's confirmation withdraws on any change.
 * - Book: depth bars and the trader's own levels, from data attributes (no inline styles).
 * - Amend dialog, tabs, notices, toasts (news from the private stream).
 * - Session: warn before the idle timeout, offer to stay signed in.
 */
(function () {
  "use strict";

  // --- qt-live ----------------------------------------------------------------------------

  htmx.defineExtension("qt-live", {
    transformResponse: function (text) {
      if (text.indexOf("hx-swap-oob") === -1) return text;
      var template = document.createElement("template");
      template.innerHTML = text;
      var dropped = false;
      Array.prototype.slice.call(template.content.children).forEach(function (child) {
        if (child.id && child.hasAttribute("hx-swap-oob") && !document.getElementById(child.id)) {
          child.remove();
          dropped = true;
        }
      });
      return dropped ? template.innerHTML : text;
    },
  });

  // --- Live sockets -----------------------------------------------------------------------

  var leaving = false;
  var attempts = 0;
  window.addEventListener("pagehide", function () { leaving = true; });

  function liveState(state) {
    document.querySelectorAll("[data-live-state]").forEach(function (badge) {
      badge.setAttribute("data-live-state", state);
      badge.textContent = state === "open" ? "Live" : state === "closed" ? "Reconnecting…" : "Connecting…";
    });
  }

  document.addEventListener("htmx:wsConnecting", function () { liveState("connecting"); });
  document.addEventListener("htmx:wsOpen", function () { attempts = 0; liveState("open"); });
  document.addEventListener("htmx:wsClose", function (evt) {
    if (leaving) return;
    liveState("closed");
    var code = evt.detail.event.code;
    // The extension reconnects after 1006/1011/1012/1013 itself. Of the server's own codes
    // (quantumtrades/core/websocket.py, CloseCode) 4011, 4012 and 4013 mean "come back",
    // the other 4xxx "no": a signed-out session (4001) or a socket that flooded (4008).
    if ([1006, 1011, 1012, 1013].indexOf(code) >= 0) return;
    if (code >= 4000 && [4011, 4012, 4013].indexOf(code) < 0) return;
    var socketElt = evt.target;
    var wrapper = evt.detail.socketWrapper;
    attempts += 1;
    var delay = Math.min(30000, 500 * Math.pow(2, Math.min(attempts, 6))) * (0.5 + Math.random() / 2);
    setTimeout(function () {
      if (!leaving && document.body.contains(socketElt)) wrapper.reconnect();
    }, delay);
  });

  // --- Notices ----------------------------------------------------------------------------

  var noticeTimer = null;

  function showNotice(text, level) {
    var box = document.getElementById("notice");
    if (!box) return;
    box.className = "notice " + (level || "info");
    box.innerHTML = "";
    var span = document.createElement("span");
    span.textContent = text;
    box.appendChild(span);
  }

  function scheduleNoticeClear() {
    clearTimeout(noticeTimer);
    var box = document.getElementById("notice");
    if (!box || !box.textContent.trim()) return;
    noticeTimer = setTimeout(function () {
      var current = document.getElementById("notice");
      if (current) { current.className = "notice"; current.innerHTML = ""; }
    }, 8000);
  }

  document.addEventListener("click", function (evt) {
    if (evt.target.closest("#notice [data-dismiss]")) {
      var box = document.getElementById("notice");
      box.className = "notice";
      box.innerHTML = "";
    }
  });

  document.addEventListener("htmx:responseError", function (evt) {
    var status = evt.detail.xhr.status;
    if (status === 403) {
      showNotice("This page is out of date (security token). Reload the page and try again.", "error");
    } else {
      showNotice("Something went wrong (" + status + "). Try again.", "error");
    }
    scheduleNoticeClear();
  });
  document.addEventListener("htmx:sendError", function () {
    showNotice("The server cannot be reached. Check your connection.", "error");
    scheduleNoticeClear();
  });

  // --- Toasts -----------------------------------------------------------------------------
  // The private stream appends them to #toasts (orders/private.html#toasts). Each stays
  // TOAST_MS (longer while pointed at or focused), at most MAX_TOASTS at once. A toast
  // that only repeats the notice of my own click (same order, just now) is not shown.

  var TOAST_MS = 8000;
  var MAX_TOASTS = 4;

  function dismissToast(toast) {
    clearTimeout(toast._timer);
    if (toast.contains(document.activeElement)) {
      var main = document.getElementById("content");
      if (main) { main.tabIndex = -1; main.focus({ preventScroll: true }); }
    }
    toast.remove();
  }
  function scheduleToast(toast, ms) {
    clearTimeout(toast._timer);
    toast._timer = setTimeout(function () {
      if (toast.matches(":hover, :focus-within")) scheduleToast(toast, 2000);
      else dismissToast(toast);
    }, ms);
  }
  function showToast(toast) {
    if (toast._shown) return;
    toast._shown = true;
    var notice = document.getElementById("notice");
    var order = toast.getAttribute("data-order-id");
    if (notice && order && new RegExp("#" + order + "\\b").test(notice.textContent) && toast.getAttribute("data-kind") !== "fill") {
      toast.remove();
      return;
    }
    var all = document.querySelectorAll("#toasts [data-toast]");
    for (var i = 0; i < all.length - MAX_TOASTS; i++) dismissToast(all[i]);
    scheduleToast(toast, TOAST_MS);
  }
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-dismiss-toast]");
    if (button) dismissToast(button.closest("[data-toast]"));
  });

  // --- Order ticket -----------------------------------------------------------------------

  function syncTicket(form) {
    var checked = form.querySelector('input[name="type"]:checked');
    var type = checked ? checked.value : "limit";
    var isMarket = type === "market" || type === "stop_market" || type === "trailing_stop";
    var isStop = type === "stop_limit" || type === "stop_market" || type === "trailing_stop";
    var price = form.querySelector('input[name="price"]');
    var tif = form.querySelector('select[name="time_in_force"]');
    var postOnly = form.querySelector('input[name="post_only"]');
    // Each kind of order shows its own fields (data-kinds, orders/forms.py KIND_FIELDS); a
    // hidden field's input is disabled, so the ticket never sends what the trader cannot see.
    var gtd = tif && tif.value === "GTD";
    form.querySelectorAll("[data-kinds]").forEach(function (el) {
      var shown = el.getAttribute("data-kinds").split(" ").indexOf(type) !== -1;
      if (el.querySelector('input[name="expire_at"]')) shown = shown && gtd;
      el.hidden = !shown;
      el.querySelectorAll("input, select").forEach(function (input) { input.disabled = !shown; });
    });
    if (price) {
      price.disabled = isMarket;
      price.placeholder = isMarket ? "Market" : price.getAttribute("data-placeholder") || price.placeholder;
    }
    if (tif) {
      // A market order never rests: IOC unless the trader chose FOK.
      if (isMarket && tif.value === "GTC") tif.value = "IOC";
      if (!isMarket && tif.value === "IOC" && !tif.hasAttribute("data-chosen")) tif.value = "GTC";
    }
    if (postOnly && (isMarket || isStop)) {
      postOnly.disabled = true;
      postOnly.checked = false;
    }
    var sell = form.querySelector('input[name="side"][value="sell"]');
    form.setAttribute("data-side", sell && sell.checked ? "sell" : "buy");
  }

  function syncErrors(root) {
    (root || document).querySelectorAll('p.error[id^="ticket-error-"]').forEach(function (slot) {
      var name = slot.id.slice("ticket-error-".length);
      var form = document.getElementById("ticket");
      if (!form) return;
      var invalid = !!slot.textContent.trim();
      form.querySelectorAll('[name="' + name + '"]').forEach(function (input) {
        if (invalid) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      });
      var field = slot.closest(".field");
      if (field) field.classList.toggle("invalid", invalid);
    });
  }

  // Capture phase: adjust the ticket before htmx reads it for the preview request.
  document.addEventListener("change", function (evt) {
    var form = evt.target.closest && evt.target.closest("#ticket");
    if (!form) return;
    if (evt.target.name === "time_in_force") evt.target.setAttribute("data-chosen", "");
    syncTicket(form);
  }, true);

  function trimPrice(text, places) {
    // "101.50000000" -> "101.50" at a tick of 0.01: string work, never a float.
    var parts = String(text).split(".");
    if (parts.length === 1 || places === 0) return parts[0];
    return parts[0] + "." + (parts[1] + "0".repeat(places)).slice(0, places);
  }

  document.addEventListener("click", function (evt) {
    var level = evt.target.closest && evt.target.closest("#book [data-price]");
    var form = document.getElementById("ticket");
    if (!level || !form) return;
    var limit = form.querySelector('input[name="type"][value="limit"]');
    if (limit && !limit.checked) {
      limit.checked = true;
      limit.dispatchEvent(new Event("change", { bubbles: true }));
    }
    var price = form.querySelector('input[name="price"]');
    var places = parseInt(form.getAttribute("data-price-places") || "8", 10);
    price.value = trimPrice(level.getAttribute("data-price"), places);
    price.dispatchEvent(new Event("input", { bubbles: true }));
    var quantity = form.querySelector('input[name="quantity"]');
    (quantity || price).focus();
  });

  // The confirmation of a market order: Back, or any change to the ticket, withdraws it.
  function withdrawConfirmation(form, focus) {
    var panel = form.querySelector("[data-ticket-confirm]");
    if (!panel) return;
    panel.remove();
    var submit = form.querySelector("#ticket-submit");
    submit.hidden = false;
    if (focus) submit.focus();
  }
  document.addEventListener("click", function (evt) {
    var back = evt.target.closest && evt.target.closest("[data-ticket-back]");
    if (back) withdrawConfirmation(back.closest("form"), true);
  });
  document.addEventListener("input", function (evt) {
    var form = evt.target.closest && evt.target.closest("#ticket");
    if (form) withdrawConfirmation(form, false);
  });
  document.addEventListener("change", function (evt) {
    var form = evt.target.closest && evt.target.closest("#ticket");
    if (form) withdrawConfirmation(form, false);
  });
  document.addEventListener("keydown", function (evt) {
    var form = document.getElementById("ticket");
    if (evt.key === "Escape" && form && form.querySelector("[data-ticket-confirm]") && form.contains(evt.target)) {
      withdrawConfirmation(form, true);
    }
  });

  // Keyboard: B and S take the ticket to its Buy or Sell side, from anywhere on the page
  // but a text field (where they are letters) or with a modifier held.
  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey || evt.defaultPrevented) return;
    var key = (evt.key || "").toLowerCase();
    if (key !== "b" && key !== "s") return;
    var target = evt.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) && target.type !== "radio" && target.type !== "checkbox")) return;
    if (document.querySelector("dialog[open]")) return;
    var form = document.getElementById("ticket");
    var radio = form && form.querySelector('input[name="side"][value="' + (key === "b" ? "buy" : "sell") + '"]');
    if (!radio) return;
    evt.preventDefault();
    if (!radio.checked) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
    }
    radio.focus();
    radio.closest(".ticket-panel").scrollIntoView({ block: "nearest" });
  });

  // A balance changed: the ticket's "available" follows (once per burst of swaps).
  var refreshTimer = null;
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var target = evt.detail && evt.detail.target;
    if (target && target.id === "balances" && document.getElementById("ticket")) {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(function () { htmx.trigger(document.body, "qt:refresh-ticket"); }, 150);
    }
  });

  // --- Amend dialog -----------------------------------------------------------------------

  document.addEventListener("htmx:afterSwap", function (evt) {
    var dialog = document.getElementById("amend-dialog");
    if (!dialog || evt.detail.target !== dialog) return;
    if (dialog.querySelector("form")) {
      if (!dialog.open) dialog.showModal();
      var invalid = dialog.querySelector('[aria-invalid="true"]');
      (invalid || dialog.querySelector("input:not([type=hidden])")).focus();
    } else if (dialog.open) {
      dialog.close();
    }
  });
  document.addEventListener("qt:amended", function () {
    var dialog = document.getElementById("amend-dialog");
    if (dialog && dialog.open) dialog.close();
  });
  document.addEventListener("click", function (evt) {
    var closer = evt.target.closest && evt.target.closest("[data-close-dialog]");
    if (closer) closer.closest("dialog").close();
  });
  document.addEventListener("close", function (evt) {
    if (evt.target.id === "amend-dialog") evt.target.innerHTML = "";
  }, true);

  // --- Tabs -------------------------------------------------------------------------------

  function selectTab(tab) {
    var list = tab.closest('[role="tablist"]');
    list.querySelectorAll('[role="tab"]').forEach(function (other) {
      var selected = other === tab;
      other.setAttribute("aria-selected", selected ? "true" : "false");
      other.tabIndex = selected ? 0 : -1;
      var pane = document.getElementById(other.getAttribute("aria-controls"));
      if (pane) pane.hidden = !selected;
    });
  }
  document.addEventListener("click", function (evt) {
    var tab = evt.target.closest && evt.target.closest('[role="tab"]');
    if (tab) selectTab(tab);
  });
  document.addEventListener("keydown", function (evt) {
    var tab = evt.target.closest && evt.target.closest('[role="tab"]');
    if (!tab || (evt.key !== "ArrowRight" && evt.key !== "ArrowLeft")) return;
    var tabs = Array.prototype.slice.call(tab.closest('[role="tablist"]').querySelectorAll('[role="tab"]'));
    var next = tabs[(tabs.indexOf(tab) + (evt.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next);
    next.focus();
    evt.preventDefault();
  });

  // --- Book decorations ------------------------------------------------------------------
  // Depth bars and the trader's own levels arrive as data (data-depth, #my-levels): the
  // Content-Security-Policy refuses style attributes and <style> elements in HTML, not
  // styles set through the CSSOM. Set at once after each swap, before the browser paints.

  function decorateBook() {
    var book = document.getElementById("book");
    if (!book) return;
    var mine = {};
    document.querySelectorAll("#my-levels li").forEach(function (level) {
      mine[[level.getAttribute("data-symbol"), level.getAttribute("data-side"), level.getAttribute("data-price")].join(" ")] = true;
    });
    var symbol = book.getAttribute("data-symbol");
    book.querySelectorAll(".level[data-depth]").forEach(function (row) {
      row.style.setProperty("--depth", row.getAttribute("data-depth") + "%");
      row.classList.toggle("mine", !!mine[[symbol, row.getAttribute("data-side"), row.getAttribute("data-price")].join(" ")]);
    });
  }

  // market.js regroups the book after a swap, then decorates it again.
  window.qtDecorateBook = decorateBook;
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var target = evt.detail && evt.detail.target;
    if (target && (target.id === "book" || target.id === "my-levels")) decorateBook();
  });

  // --- Every swap (and the first load) ------------------------------------------------------

  htmx.onLoad(function (elt) {
    if (elt.matches && elt.matches("[data-toast]")) showToast(elt);
    if (elt.querySelectorAll) elt.querySelectorAll("[data-toast]").forEach(showToast);
    decorateBook();
    var form = elt.id === "ticket" ? elt : elt.querySelector && elt.querySelector("#ticket");
    if (form) syncTicket(form);
    var confirm = form && form.querySelector("#ticket-confirm");
    if (confirm) confirm.focus();
    syncErrors();
    if (elt.id === "notice" || (elt.querySelector && elt.querySelector("#notice"))) scheduleNoticeClear();
  });

  // --- Session idle timeout ---------------------------------------------------------------

  var body = document.body;
  var idleSeconds = parseInt(body.getAttribute("data-session-idle") || "0", 10);
  if (!idleSeconds) return;
  var KEY = "qt.lastActivity";
  var warnSeconds = Math.min(300, Math.floor(idleSeconds / 4));
  var dialog = document.getElementById("session-warning");
  var countdown = dialog && dialog.querySelector("[data-countdown]");

  function touch() {
    // Shared by the trader's tabs: activity in one keeps the others from warning.
    try { localStorage.setItem(KEY, String(Date.now())); } catch (e) { /* private mode */ }
    lastSeen = Date.now();
  }
  function lastActivity() {
    var stored = 0;
    try { stored = parseInt(localStorage.getItem(KEY) || "0", 10); } catch (e) { /* private mode */ }
    return Math.max(stored, lastSeen);
  }
  var lastSeen = Date.now();
  touch(); // this page's own request renewed the session

  document.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.detail.successful) touch();
  });

  function tick() {
    var left = Math.round((lastActivity() + idleSeconds * 1000 - Date.now()) / 1000);
    if (left <= 0) {
      window.location.assign(body.getAttribute("data-login-url") + "?next=" +
        encodeURIComponent(window.location.pathname + window.location.search));
      return;
    }
    if (left <= warnSeconds) {
      if (countdown) countdown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (dialog && !dialog.open) dialog.showModal();
    } else if (dialog && dialog.open) {
      dialog.close();
    }
  }
  setInterval(tick, 1000);
})();
