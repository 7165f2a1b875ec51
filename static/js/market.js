/* The market page's drawings: the price chart, the depth chart, the book's price grouping.
 *
 * - Price chart: TradingView's lightweight-charts (static/vendor). History comes with the
 *   page (#price-chart data-history) or, at another interval, from the public candles API;
 *   the current bar of every interval arrives with the page socket's #chart fragment
 *   (data-tails), so the chart follows live whatever interval it shows.
 * - Depth chart: cumulative bids and asks of the #book fragment, on a canvas of its own,
 *   redrawn after each swap of the book.
 * - Grouping: the book's levels summed into multiples of the tick, in the browser (the
 *   fragment is rendered once for every subscriber). Prices and sizes are added as scaled
 *   integers, never as floats.
 *
 * Numbers shown in text come from the server's decimal strings; floats only place pixels.
 */
(function () {
  "use strict";

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  // Decimal strings as BigInt units of 10^-places and back.
  function toUnits(text, places) {
    var parts = String(text).split(".");
    var frac = ((parts[1] || "") + "0".repeat(places)).slice(0, places);
    return BigInt(parts[0] + frac);
  }
  function fromUnits(units, places) {
    var negative = units < 0n;
    var digits = (negative ? -units : units).toString().padStart(places + 1, "0");
    var text = places ? digits.slice(0, -places) + "." + digits.slice(-places) : digits;
    return (negative ? "-" : "") + text;
  }
  function fixed(text, places) {
    return fromUnits(toUnits(text, places), places);
  }
  function grouped(text) {
    // "12345.67" -> "12,345.67" for reading; the value itself stays a string.
    var parts = String(text).split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return parts.join(".");
  }

  // --- Price chart --------------------------------------------------------------------------

  var root = document.getElementById("price-chart");
  var chartApi = null;

  function startChart() {
    var LWC = window.LightweightCharts;
    var canvas = root.querySelector("[data-chart-canvas]");
    var places = parseInt(root.getAttribute("data-price-places"), 10);
    var qtyPlaces = parseInt(root.getAttribute("data-qty-places"), 10);
    var up = cssVar("--buy", "#26b97f");
    var down = cssVar("--sell", "#f0616d");
    var chart = LWC.createChart(canvas, {
      autoSize: true,
      layout: {
        background: { type: "solid", color: cssVar("--panel", "#121820") },
        textColor: cssVar("--muted", "#8593a3"),
        fontFamily: cssVar("--mono", "monospace"),
        // Its logo needs an inline <style>, which the Content-Security-Policy refuses;
        // the page credits TradingView under the chart instead.
        attributionLogo: false,
      },
      grid: { vertLines: { color: cssVar("--line", "#232d39") }, horzLines: { color: cssVar("--line", "#232d39") } },
      crosshair: { mode: LWC.CrosshairMode.Normal },
      rightPriceScale: { borderColor: cssVar("--line-strong", "#2f3b4a"), scaleMargins: { top: 0.08, bottom: 0.26 } },
      timeScale: { borderColor: cssVar("--line-strong", "#2f3b4a"), timeVisible: true, secondsVisible: false, rightOffset: 3 },
      // The keyboard scrolls the page, not the chart; the chart scrolls with a pointer.
      handleScroll: { mouseWheel: false, pressedMouseMove: true, horzTouchDrag: true, vertTouchDrag: false },
      handleScale: { mouseWheel: true, pinch: true, axisPressedMouseMove: true },
    });
    var candles = chart.addCandlestickSeries({
      upColor: up, downColor: down, wickUpColor: up, wickDownColor: down, borderVisible: false,
      priceFormat: { type: "price", precision: places, minMove: parseFloat(root.getAttribute("data-tick")) },
    });
    var volume = chart.addHistogramSeries({
      priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
    });
    chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

    var bars = {}; // time -> [time, open, high, low, close, volume] as the server sent it
    var last = null;
    var interval = root.getAttribute("data-interval");
    var upVolume = "rgba(38, 185, 127, .45)";
    var downVolume = "rgba(240, 97, 109, .45)";

    function point(row) {
      return { time: row[0], open: +row[1], high: +row[2], low: +row[3], close: +row[4] };
    }
    function volumePoint(row) {
      return { time: row[0], value: +row[5], color: +row[4] >= +row[1] ? upVolume : downVolume };
    }
    function readout(row) {
      var set = function (name, text) { root.querySelector("[data-readout-" + name + "]").textContent = text; };
      if (!row) {
        ["time", "open", "high", "low", "close", "volume"].forEach(function (name) { set(name, "–"); });
        return;
      }
      var when = new Date(row[0] * 1000).toISOString();
      set("time", interval === "1d" ? when.slice(0, 10) : when.slice(0, 10) + " " + when.slice(11, 16));
      set("open", grouped(fixed(row[1], places)));
      set("high", grouped(fixed(row[2], places)));
      set("low", grouped(fixed(row[3], places)));
      set("close", grouped(fixed(row[4], places)));
      set("volume", grouped(fixed(row[5], qtyPlaces)));
      var readoutBox = root.querySelector("[data-readout]");
      readoutBox.setAttribute("data-time", String(row[0]));
      readoutBox.classList.toggle("down", +row[4] < +row[1]);
    }
    function load(rows) {
      bars = {};
      rows.forEach(function (row) { bars[row[0]] = row; });
      last = rows.length ? rows[rows.length - 1] : null;
      candles.setData(rows.map(point));
      volume.setData(rows.map(volumePoint));
      root.querySelector("[data-chart-empty]").hidden = rows.length > 0;
      chart.timeScale().applyOptions({ timeVisible: interval !== "1d" });
      readout(last);
    }
    function follow(rows) {
      // The newest bars of this interval: update the current one, append a new one.
      (rows || []).forEach(function (row) {
        if (last && row[0] < last[0]) return; // the chart never goes back in time
        bars[row[0]] = row;
        candles.update(point(row));
        volume.update(volumePoint(row));
        if (!last || row[0] >= last[0]) last = row;
      });
      root.querySelector("[data-chart-empty]").hidden = !!last;
      if (!hovering) readout(last);
    }
    var hovering = false;
    chart.subscribeCrosshairMove(function (param) {
      var row = param && param.time !== undefined ? bars[param.time] : null;
      hovering = !!row;
      readout(row || last);
    });

    // The keyboard reads the bars too: with the chart focused, Left and Right (Home, End)
    // move the crosshair from bar to bar and the readout (a live region then) follows.
    var keyed = null; // index into the sorted bar times while the keyboard drives
    canvas.addEventListener("keydown", function (evt) {
      var times = Object.keys(bars).map(Number).sort(function (a, b) { return a - b; });
      if (!times.length) return;
      var at = keyed === null ? times.length - 1 : keyed;
      if (evt.key === "ArrowLeft") at = Math.max(0, at - 1);
      else if (evt.key === "ArrowRight") at = Math.min(times.length - 1, at + 1);
      else if (evt.key === "Home") at = 0;
      else if (evt.key === "End") at = times.length - 1;
      else return;
      evt.preventDefault();
      keyed = at;
      var row = bars[times[at]];
      root.querySelector("[data-readout]").setAttribute("aria-live", "polite");
      chart.setCrosshairPosition(+row[4], row[0], candles);
      hovering = true;
      readout(row);
    });
    canvas.addEventListener("blur", function () {
      keyed = null;
      hovering = false;
      root.querySelector("[data-readout]").setAttribute("aria-live", "off");
      chart.clearCrosshairPosition();
      readout(last);
    });

    function followFeed() {
      var feed = document.getElementById("chart");
      if (!feed) return;
      try {
        follow(JSON.parse(feed.getAttribute("data-tails") || "{}")[interval]);
      } catch (e) { /* a malformed feed: wait for the next one */ }
    }

    var loading = 0;
    function switchTo(next) {
      var ticket = ++loading;
      var url = root.getAttribute("data-candles-url") + "?interval=" + encodeURIComponent(next) + "&limit=300";
      root.setAttribute("aria-busy", "true");
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.json();
        })
        .then(function (list) {
          if (ticket !== loading) return;
          interval = next;
          root.setAttribute("data-interval", next);
          var label = root.querySelector("[data-chart-canvas]");
          label.setAttribute("aria-label", label.getAttribute("aria-label").replace(/\w+ candles/, next + " candles"));
          load(list.map(function (c) {
            return [Math.floor(Date.parse(c.start) / 1000), c.open, c.high, c.low, c.close, c.volume];
          }));
          followFeed();
          document.querySelectorAll(".intervals [data-interval]").forEach(function (link) {
            if (link.getAttribute("data-interval") === next) link.setAttribute("aria-current", "true");
            else link.removeAttribute("aria-current");
          });
          var address = new URL(window.location.href);
          address.searchParams.set("interval", next);
          history.replaceState(history.state, "", address.pathname + address.search);
        })
        .catch(function () { window.location.assign("?interval=" + encodeURIComponent(next)); })
        .finally(function () { if (ticket === loading) root.removeAttribute("aria-busy"); });
    }

    document.addEventListener("click", function (evt) {
      var link = evt.target.closest && evt.target.closest(".intervals [data-interval]");
      if (!link || evt.ctrlKey || evt.metaKey || evt.shiftKey || evt.button !== 0) return;
      evt.preventDefault();
      switchTo(link.getAttribute("data-interval"));
    });
    document.addEventListener("htmx:oobAfterSwap", function (evt) {
      if (evt.detail && evt.detail.target && evt.detail.target.id === "chart") followFeed();
    });

    try {
      load(JSON.parse(root.getAttribute("data-history") || "[]"));
    } catch (e) {
      load([]);
    }
    followFeed();
    // Tests and curious readers can ask what is drawn.
    return { chart: chart, candles: candles, volume: volume, bars: function () { return bars; }, interval: function () { return interval; } };
  }

  if (root && window.LightweightCharts) {
    chartApi = startChart();
    window.qtPriceChart = chartApi;
  }

  // --- Book: grouping and depth -------------------------------------------------------------

  var groupSelect = document.getElementById("book-group");
  var depthCanvas = document.getElementById("depth-chart");

  function bookLevels(book) {
    // The levels as the server sent them (kept on the element: grouping rewrites its rows).
    if (book._levels) return book._levels;
    var read = function (selector) {
      return Array.prototype.map.call(book.querySelectorAll(selector + " .level[data-price]"), function (row) {
        return [row.getAttribute("data-price"), row.getAttribute("data-qty")];
      });
    };
    // Asks are listed highest first (best ask last): read them best first.
    book._levels = { bids: read(".bids"), asks: read(".asks").reverse() };
    return book._levels;
  }

  function groupLevels(levels, side, step, places, qtyPlaces) {
    var out = [];
    var byPrice = {};
    levels.forEach(function (level) {
      var units = toUnits(level[0], places);
      var bucket = side === "bids" ? (units / step) * step : ((units + step - 1n) / step) * step;
      var key = bucket.toString();
      if (!(key in byPrice)) {
        byPrice[key] = out.length;
        out.push([bucket, 0n]);
      }
      out[byPrice[key]][1] += toUnits(level[1], qtyPlaces);
    });
    return out.map(function (entry) { return [fromUnits(entry[0], places), fromUnits(entry[1], qtyPlaces)]; });
  }

  function rewriteSide(list, levels, side, qtyPlaces, deepest) {
    var total = 0n;
    var rows = levels.map(function (level) {
      total += toUnits(level[1], qtyPlaces);
      return { price: level[0], qty: level[1], total: total };
    });
    if (side === "asks") rows.reverse();
    var className = side === "bids" ? "buy" : "sell";
    list.innerHTML = "";
    rows.forEach(function (row) {
      var li = document.createElement("li");
      li.className = "level " + className;
      li.setAttribute("data-side", className);
      li.setAttribute("data-price", row.price);
      li.setAttribute("data-qty", row.qty);
      li.setAttribute("data-depth", deepest ? (Number(row.total * 1000n / deepest) / 10).toFixed(1) : "0");
      [["price", row.price], ["qty", row.qty], ["total", fromUnits(row.total, qtyPlaces)]].forEach(function (cell) {
        var span = document.createElement("span");
        span.className = cell[0];
        span.textContent = cell[1];
        li.appendChild(span);
      });
      list.appendChild(li);
    });
  }

  function applyGrouping(book) {
    if (!groupSelect) return;
    var factor = BigInt(groupSelect.value || "1");
    if (factor === 1n && !book._grouped) return;
    var places = parseInt(book.getAttribute("data-price-places"), 10);
    var qtyPlaces = parseInt(book.getAttribute("data-qty-places"), 10);
    var step = toUnits(book.getAttribute("data-tick"), places) * factor;
    var levels = bookLevels(book);
    var sides = {
      bids: factor === 1n ? levels.bids : groupLevels(levels.bids, "bids", step, places, qtyPlaces),
      asks: factor === 1n ? levels.asks : groupLevels(levels.asks, "asks", step, places, qtyPlaces),
    };
    var sum = function (list) { return list.reduce(function (acc, l) { return acc + toUnits(l[1], qtyPlaces); }, 0n); };
    var deepest = [sum(sides.bids), sum(sides.asks)].reduce(function (a, b) { return a > b ? a : b; });
    ["bids", "asks"].forEach(function (side) {
      var list = book.querySelector(".book-side." + side);
      if (list && sides[side].length) rewriteSide(list, sides[side], side, qtyPlaces, deepest);
    });
    book._grouped = factor !== 1n;
    book.setAttribute("data-grouped", String(factor));
  }

  // --- Depth chart ----------------------------------------------------------------------------

  function drawDepth(book) {
    if (!depthCanvas) return;
    var levels = bookLevels(book);
    var box = depthCanvas.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, Math.round(box.width));
    var height = Math.max(1, Math.round(box.height));
    depthCanvas.width = width * ratio;
    depthCanvas.height = height * ratio;
    var ctx = depthCanvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    var cumulative = function (list) {
      var total = 0;
      return list.map(function (level) { total += +level[1]; return [+level[0], total]; });
    };
    var bids = cumulative(levels.bids);
    var asks = cumulative(levels.asks);
    var summary = document.getElementById("depth-summary");
    depthCanvas.setAttribute("data-bid-levels", String(bids.length));
    depthCanvas.setAttribute("data-ask-levels", String(asks.length));
    if (!bids.length && !asks.length) {
      ctx.fillStyle = cssVar("--muted", "#8593a3");
      ctx.font = "12px " + cssVar("--mono", "monospace");
      ctx.textAlign = "center";
      ctx.fillText("The book is empty", width / 2, height / 2);
      if (summary) summary.textContent = "The book is empty.";
      return;
    }
    var axis = 16; // the price labels' strip at the bottom
    var plotHeight = height - axis - 4;
    var prices = bids.map(function (b) { return b[0]; }).concat(asks.map(function (a) { return a[0]; }));
    var low = Math.min.apply(null, prices);
    var high = Math.max.apply(null, prices);
    var mid = bids.length && asks.length ? (bids[0][0] + asks[0][0]) / 2 : (low + high) / 2;
    // Centred on the middle of the spread, the wider side sets the span.
    // A margin beyond the outermost level, where the chart shows the side's whole depth.
    var half = (Math.max(mid - low, high - mid) || mid * 0.01 || 1) * 1.05;
    var left = mid - half;
    var right = mid + half;
    var deepest = Math.max(bids.length ? bids[bids.length - 1][1] : 0, asks.length ? asks[asks.length - 1][1] : 0);
    var x = function (price) { return ((price - left) / (right - left)) * width; };
    depthCanvas._drawn = { left: left, right: right, width: width, mid: mid, bids: bids, asks: asks };
    var y = function (total) { return 4 + plotHeight - (total / deepest) * plotHeight; };

    function area(points, color, soft, towards) {
      if (!points.length) return;
      ctx.beginPath();
      ctx.moveTo(x(points[0][0]), y(0));
      var previous = 0;
      points.forEach(function (p) {
        ctx.lineTo(x(p[0]), y(previous));
        ctx.lineTo(x(p[0]), y(p[1]));
        previous = p[1];
      });
      ctx.lineTo(towards, y(previous));
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.lineTo(towards, y(0));
      ctx.closePath();
      ctx.fillStyle = soft;
      ctx.fill();
    }
    area(bids, cssVar("--buy", "#26b97f"), "rgba(38, 185, 127, .25)", 0);
    area(asks, cssVar("--sell", "#f0616d"), "rgba(240, 97, 109, .25)", width);

    var places = parseInt(book.getAttribute("data-price-places"), 10);
    ctx.fillStyle = cssVar("--muted", "#8593a3");
    ctx.font = "10px " + cssVar("--mono", "monospace");
    ctx.textBaseline = "bottom";
    [[left, "left"], [mid, "center"], [right, "right"]].forEach(function (tick) {
      ctx.textAlign = tick[1];
      ctx.fillText(tick[0].toFixed(places), tick[1] === "left" ? 2 : tick[1] === "right" ? width - 2 : width / 2, height - 1);
    });
    var qtyPlaces = parseInt(book.getAttribute("data-qty-places"), 10);
    var bidTotal = levels.bids.reduce(function (acc, l) { return acc + toUnits(l[1], qtyPlaces); }, 0n);
    var askTotal = levels.asks.reduce(function (acc, l) { return acc + toUnits(l[1], qtyPlaces); }, 0n);
    depthCanvas.setAttribute("data-bid-total", fromUnits(bidTotal, qtyPlaces));
    depthCanvas.setAttribute("data-ask-total", fromUnits(askTotal, qtyPlaces));
    if (summary) {
      var base = book.getAttribute("data-base") || "";
      summary.textContent =
        (levels.bids.length ? "Bids: " + fromUnits(bidTotal, qtyPlaces) + " " + base + " from " + levels.bids[0][0] +
          " down to " + levels.bids[levels.bids.length - 1][0] + ". " : "No bids. ") +
        (levels.asks.length ? "Asks: " + fromUnits(askTotal, qtyPlaces) + " " + base + " from " + levels.asks[0][0] +
          " up to " + levels.asks[levels.asks.length - 1][0] + "." : "No asks.");
    }
  }

  // Pointing at the depth chart reads out the price there and the size that far into the book.
  function depthReadout(evt) {
    var out = document.getElementById("depth-readout");
    var drawn = depthCanvas._drawn;
    var book = document.getElementById("book");
    if (!out || !drawn || !book) return;
    if (!evt) { out.textContent = ""; return; }
    var box = depthCanvas.getBoundingClientRect();
    var price = drawn.left + ((evt.clientX - box.left) / drawn.width) * (drawn.right - drawn.left);
    var side = price < drawn.mid ? drawn.bids : drawn.asks;
    var total = 0;
    side.forEach(function (level) {
      if (price < drawn.mid ? level[0] >= price : level[0] <= price) total = level[1];
    });
    var places = parseInt(book.getAttribute("data-price-places"), 10);
    var qtyPlaces = parseInt(book.getAttribute("data-qty-places"), 10);
    out.textContent = (price < drawn.mid ? "Bids from " : "Asks up to ") + grouped(price.toFixed(places)) + ": " +
      grouped(total.toFixed(qtyPlaces)) + " " + (book.getAttribute("data-base") || "");
  }
  if (depthCanvas) {
    depthCanvas.addEventListener("pointermove", depthReadout);
    depthCanvas.addEventListener("pointerleave", function () { depthReadout(null); });
  }

  function onBook() {
    var book = document.getElementById("book");
    if (!book) return;
    drawDepth(book);
    applyGrouping(book);
    if (window.qtDecorateBook) window.qtDecorateBook();
  }

  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    if (evt.detail && evt.detail.target && evt.detail.target.id === "book") onBook();
  });
  if (groupSelect) {
    groupSelect.addEventListener("change", function () {
      try { localStorage.setItem("qt.bookGroup." + groupSelect.getAttribute("data-symbol"), groupSelect.value); } catch (e) { /* private mode */ }
      onBook();
    });
    try {
      var saved = localStorage.getItem("qt.bookGroup." + groupSelect.getAttribute("data-symbol"));
      if (saved && groupSelect.querySelector('option[value="' + saved + '"]')) groupSelect.value = saved;
    } catch (e) { /* private mode */ }
  }
  if (depthCanvas && window.ResizeObserver) {
    var width = 0;
    new ResizeObserver(function (entries) {
      var next = Math.round(entries[0].contentRect.width);
      if (next !== width) { width = next; var book = document.getElementById("book"); if (book) drawDepth(book); }
    }).observe(depthCanvas);
  }
  onBook();

  // A call auction's countdown (#market-status): the server renders the seconds left with
  // each change; between changes the browser counts them down from data-ends-at.
  function tickAuction() {
    var clock = document.querySelector("#market-status .auction-countdown[data-ends-at]");
    if (!clock) return;
    var left = Math.max(0, Math.ceil((Date.parse(clock.getAttribute("data-ends-at")) - Date.now()) / 1000));
    if (!isNaN(left)) clock.textContent = left + " s";
  }
  window.setInterval(tickAuction, 1000);
})();
