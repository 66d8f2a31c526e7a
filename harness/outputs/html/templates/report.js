/* The case drill-down: filters, search and paging over the JSON embedded in each run section.
   Every string from the data is placed with textContent (never innerHTML), so it shows as text. */
(function () {
  "use strict";
  var PAGE_SIZE = 25;
  var MAX_DIFF_CELLS = 250000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function tokens(text) {
    return String(text).split(/(\s+)/).filter(function (t) { return t !== ""; });
  }

  /* Word diff of a against b (longest common subsequence): [[op, text]], op "=", "+" or "-". */
  function wordDiff(a, b) {
    var x = tokens(a), y = tokens(b), n = x.length, m = y.length;
    if (n * m > MAX_DIFF_CELLS) return [["-", a], ["+", b]];
    var table = [], i, j;
    for (i = 0; i <= n; i++) table.push(new Uint32Array(m + 1));
    for (i = n - 1; i >= 0; i--) {
      for (j = m - 1; j >= 0; j--) {
        table[i][j] = x[i] === y[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    var out = [];
    function push(op, text) {
      var last = out[out.length - 1];
      if (last && last[0] === op) last[1] += text; else out.push([op, text]);
    }
    i = 0; j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { push("=", x[i]); i++; j++; }
      else if (i < n && (j === m || table[i + 1][j] >= table[i][j + 1])) { push("-", x[i]); i++; }
      else { push("+", y[j]); j++; }
    }
    return out;
  }

  // Words the candidate wrote that the base did not: green only when the candidate's answer is
  // right, red when it is wrong, blue when the case has no pass/fail (never good by default).
  function diffNode(base, text, passed) {
    var tone = passed === true ? " diff-right" : passed === false ? " diff-wrong" : " diff-unscored";
    var pre = el("pre", "out" + tone);
    if (base === null || base === undefined || base === text) { pre.textContent = text; return pre; }
    wordDiff(base, text).forEach(function (part) {
      var tag = part[0] === "+" ? "ins" : part[0] === "-" ? "del" : "span";
      pre.appendChild(el(tag, null, part[1]));
    });
    return pre;
  }

  function formatScores(scores) {
    if (!scores) return "";
    return Object.keys(scores).map(function (k) {
      var v = scores[k];
      return k + " " + (typeof v === "number" ? String(Math.round(v * 1000) / 1000) : "—");
    }).join(" · ");
  }

  function formatDetails(details) {
    if (!details) return "";
    var why = details.rationale || details.reason || details.explanation;
    var text = typeof why === "string" ? why : JSON.stringify(details);
    return text.length > 400 ? text.slice(0, 400) + "…" : text;
  }

  function mark(passed) { return passed === true ? "✓" : passed === false ? "✗" : "·"; }

  function Drill(section) {
    this.section = section;
    this.data = JSON.parse(section.querySelector("script.case-data").textContent);
    this.base = this.data.has_base ? 0 : -1;
    this.form = section.querySelector("form.filters");
    this.list = section.querySelector(".cases");
    this.status = section.querySelector(".status");
    this.pageLabel = section.querySelector(".page");
    this.haystacks = null;
    this.page = 0;
    this.matches = [];
    this.bind();
    this.refresh();
  }

  Drill.prototype.bind = function () {
    var self = this, timer = null;
    this.form.addEventListener("change", function () { self.page = 0; self.refresh(); });
    this.form.elements.query.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { self.page = 0; self.refresh(); }, 150);
    });
    this.section.querySelectorAll(".pager button").forEach(function (button) {
      button.addEventListener("click", function () {
        var pages = Math.max(1, Math.ceil(self.matches.length / PAGE_SIZE));
        self.page = Math.min(pages - 1, Math.max(0, self.page + Number(button.dataset.step)));
        self.render();
      });
    });
  };

  Drill.prototype.shown = function () {
    var name = this.form.elements.candidate.value, models = this.data.models, out = [], i;
    for (i = 0; i < models.length; i++) {
      if (i === this.base) continue;
      if (!name || models[i] === name) out.push(i);
    }
    return out;
  };

  Drill.prototype.haystack = function (index) {
    if (!this.haystacks) this.haystacks = new Array(this.data.cases.length);
    var h = this.haystacks[index];
    if (h === undefined) {
      var row = this.data.cases[index];
      h = [row[1], row[2], row[3] || ""].concat(row[4].map(function (o) { return o || ""; }))
        .join("\n").toLowerCase();
      this.haystacks[index] = h;
    }
    return h;
  };

  Drill.prototype.matchesOutcome = function (row, outcome, shown) {
    var passed = row[5], outputs = row[4], b = this.base;
    var baseState = b >= 0 ? passed[b] : null;
    return shown.some(function (c) {
      if (outcome === "regressed") return baseState === true && passed[c] === false;
      if (outcome === "failed") return passed[c] === false;
      if (outcome === "fixed") return baseState === false && passed[c] === true;
      if (outcome === "changed") return b >= 0 && outputs[c] !== null && outputs[c] !== outputs[b];
      return outputs[c] !== null || passed[c] !== null;
    }) || (outcome === "all" && shown.length === 0);
  };

  Drill.prototype.refresh = function () {
    var f = this.form.elements, outcome = f.outcome.value, check = f.check.value;
    var query = f.query.value.trim().toLowerCase(), shown = this.shown();
    var cases = this.data.cases, out = [], i;
    for (i = 0; i < cases.length; i++) {
      if (check !== "" && String(cases[i][0]) !== check) continue;
      if (outcome !== "all" && !this.matchesOutcome(cases[i], outcome, shown)) continue;
      if (query && this.haystack(i).indexOf(query) < 0) continue;
      out.push(i);
    }
    this.matches = out;
    this.render();
  };

  Drill.prototype.render = function () {
    var shown = this.shown(), start = this.page * PAGE_SIZE, self = this;
    var slice = this.matches.slice(start, start + PAGE_SIZE);
    var fragment = document.createDocumentFragment();
    slice.forEach(function (index) { fragment.appendChild(self.card(self.data.cases[index], shown)); });
    this.list.replaceChildren(fragment);
    var total = this.data.cases.length, count = this.matches.length;
    this.status.textContent = count === 0 ? "no case matches (" + total + " in all)" :
      "showing " + (start + 1) + "–" + (start + slice.length) + " of " + count + " matching cases (" + total + " in all)";
    var pages = Math.max(1, Math.ceil(count / PAGE_SIZE));
    this.pageLabel.textContent = "page " + (this.page + 1) + " of " + pages;
  };

  Drill.prototype.card = function (row, shown) {
    var data = this.data, b = this.base, passed = row[5];
    var regressed = b >= 0 && passed[b] === true && shown.some(function (c) { return passed[c] === false; });
    var failed = shown.some(function (c) { return passed[c] === false; });
    var card = el("article", "case" + (regressed ? " regressed" : failed ? " failed" : ""));
    var head = el("div", "case-head");
    var check = data.checks[row[0]];
    head.appendChild(el("span", "muted", check[0] + " / " + check[1]));
    head.appendChild(el("span", "id", row[1]));
    var models = (b >= 0 ? [b] : []).concat(shown);
    models.forEach(function (i) {
      var isRegression = i !== b && b >= 0 && passed[b] === true && passed[i] === false;
      var cls = "chip " + (isRegression ? "regressed" : passed[i] === true ? "pass" : passed[i] === false ? "fail" : "");
      head.appendChild(el("span", cls, data.models[i] + " " + mark(passed[i]) + (isRegression ? " regressed" : "")));
    });
    card.appendChild(head);
    card.appendChild(this.field("prompt", row[2]));
    if (row[3] !== null && row[3] !== undefined) card.appendChild(this.field("expected", row[3]));
    var outputs = el("div", "outputs");
    models.forEach(function (i) { outputs.appendChild(self_output(data, row, i, b)); });
    card.appendChild(outputs);
    return card;
  };

  Drill.prototype.field = function (label, text) {
    var box = el("div", "field");
    box.appendChild(el("div", "label", label));
    box.appendChild(el("pre", "out", text));
    return box;
  };

  function self_output(data, row, i, b) {
    var box = el("div", "output");
    var label = data.models[i] + (i === b ? " (base)" : "") + " " + mark(row[5][i]);
    box.appendChild(el("div", "model", label));
    if (row[4][i] === null) {
      box.appendChild(el("pre", "out muted", "(no output: this model was not evaluated on this case: an error, or `capabilities:` left it out)"));
      return box;
    }
    box.appendChild(i === b || b < 0 ? el("pre", "out", row[4][i]) : diffNode(row[4][b], row[4][i], row[5][i]));
    var scores = formatScores(row[6][i]);
    if (scores) box.appendChild(el("div", "scores", scores));
    var details = formatDetails(row[7][i]);
    if (details) box.appendChild(el("div", "scores", details));
    return box;
  }

  function start() {
    document.querySelectorAll("section.drill").forEach(function (section) {
      try { new Drill(section); }
      catch (err) { section.querySelector(".status").textContent = "could not show the cases: " + err; throw err; }
    });
    document.documentElement.setAttribute("data-report-ready", String(Math.round(performance.now())));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
