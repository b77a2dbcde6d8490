/* predmon status page: polls api/v1/models every 5 s and renders it. No dependencies, no external requests. */
(function () {
  'use strict';
  var API = 'api/v1/models', EVERY_MS = 5000;
  var doc = document, root = doc.documentElement;
  var st = { data: null, win: null, user: {}, okAt: null, err: null, timer: 0, renders: 0, wins: '' };
  function $(id) { return doc.getElementById(id); }

  // ---- formatting (mirrors page.rs, so the no-JS table and this one read the same) ----
  var ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
  function isNum(x) { return typeof x === 'number' && isFinite(x); }
  function fix(x, d) { return isNum(x) ? x.toFixed(d) : '\u2013'; }
  function int(x) { return isNum(x) ? String(Math.round(x)).replace(/\B(?=(\d{3})+(?!\d))/g, ',') : '\u2013'; }
  function rate(x) { if (!isNum(x)) return '\u2013'; var a = Math.abs(x); return x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2); }
  function pct(x) {
    if (!isNum(x)) return '\u2013';
    var p = x * 100, r = Math.round(p);
    if (r === 0 && p > 0) return p < 0.1 ? '<0.1%' : p.toFixed(1) + '%';
    if (r === 100 && p < 100) return (Math.floor(p * 10) / 10).toFixed(1) + '%';
    return r + '%';
  }
  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }
  var INT = /^-?\d+$/;
  function cmpClass(a, b) {
    var ia = INT.test(a), ib = INT.test(b);
    if (ia && ib) return (+a - +b) || cmp(a, b);
    if (ia !== ib) return ia ? -1 : 1;
    return cmp(a, b);
  }
  function winSecs(w) {
    var m = /^(\d+)(s|m|h|d|w)$/.exec(w);
    return m ? +m[1] * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]] : Infinity;
  }
  function windowsOf(d) {
    var w = d && d.windows && typeof d.windows === 'object' ? Object.keys(d.windows) : [];
    return w.sort(function (a, b) { return (winSecs(a) - winSecs(b)) || cmp(a, b); });
  }
  function alertsOf(m) { return m && Array.isArray(m.alerts) ? m.alerts : []; }
  function sortedNames(models) {
    return Object.keys(models).sort(function (a, b) {
      return (alertsOf(models[a]).length ? 0 : 1) - (alertsOf(models[b]).length ? 0 : 1) || cmp(a, b);
    });
  }
  function healthOf(m) { return alertsOf(m).length ? 'alert' : (m && m.samples > 0) ? 'ok' : 'idle'; }
  function anchor(name) {
    var b = new TextEncoder().encode(name), h = 'm-';
    for (var i = 0; i < b.length; i++) h += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return h;
  }
  function alertClass(a) { return a && a['class'] != null ? String(a['class']) : ''; }
  function alertLabel(a) { var c = alertClass(a); return String(a.alert).replace(/_/g, ' ') + (c ? ' \u00b7 ' + c : ''); }

  // ---- alerts in words ----
  function alertText(a, m) {
    var c = alertClass(a), k = (m.classes || {})[c] || {};
    switch (a.alert) {
      case 'prediction_collapse':
        return 'predicts class ' + c + ' for ' + pct(k.prediction_share) + ' of samples while ' + pct(k.label_share) + ' are class ' + c;
      case 'recall_collapse':
        return 'recall of class ' + c + ' is ' + fix(k.recall, 2) + ' over ' + int(k.support) + ' true samples';
      case 'near_chance': {
        var acc = m.accuracy, base = m.majority_baseline_accuracy;
        if (!isNum(acc) || !isNum(base)) return 'accuracy is near the majority baseline';
        if (acc <= base) return 'accuracy ' + fix(acc, 3) + ' is not above the majority baseline ' + fix(base, 3);
        var d = Math.max(1, Math.ceil((acc - base) * 100 - 1e-9)) / 100;
        return 'accuracy ' + fix(acc, 3) + ' is within ' + d.toFixed(2) + ' of the majority baseline ' + fix(base, 3);
      }
      case 'label_imbalance': {
        var hi = null, lo = null, cs = m.classes || {};
        Object.keys(cs).sort(cmpClass).forEach(function (n) {
          var s = cs[n] && cs[n].support;
          if (!(s > 0)) return;
          if (!hi || s > hi[1]) hi = [n, s];
          if (!lo || s < lo[1]) lo = [n, s];
        });
        return 'label imbalance ratio ' + fix(m.imbalance_ratio, 1) +
          (hi && lo ? ' (class ' + hi[0] + ': ' + int(hi[1]) + ' true samples, class ' + lo[0] + ': ' + int(lo[1]) + ')' : '');
      }
      case 'distribution_shift': {
        var d = m.drift || {};
        return 'predicted classes moved from the reference period: PSI ' + fix(d.prediction_psi, 2) + ' over ' + int(d.predictions) + ' predictions';
      }
      default:
        return String(a.alert) + (c ? ' on class ' + c : '');
    }
  }

  // ---- summary table ----
  var EMPTY = '<p class="empty">No models yet: predmon has not accepted an event for any model.</p>';
  function badges(m) {
    return alertsOf(m).map(function (a) {
      return '<span class="badge b-a" title="' + esc(alertText(a, m)) + '">' + esc(alertLabel(a)) + '</span>';
    }).join('');
  }
  function healthBadge(h) {
    return h === 'alert' ? '<span class="badge b-alert">ALERT</span>' : h === 'ok' ? '<span class="badge b-ok">OK</span>' : '<span class="badge">NO SAMPLES</span>';
  }
  function accCell(m) {
    var a = m.accuracy, b = m.majority_baseline_accuracy, h = '<span class="v">' + fix(a, 3) + '</span>';
    if (isNum(a)) {
      h += '<span class="accbar" title="accuracy ' + fix(a, 3) + ', majority baseline ' + fix(b, 3) + '"><i style="width:' + (Math.max(0, Math.min(1, a)) * 100).toFixed(1) + '%"></i>' +
        (isNum(b) ? '<b style="left:' + (Math.max(0, Math.min(1, b)) * 100).toFixed(1) + '%"></b>' : '') + '</span>';
    }
    return h;
  }
  function summaryHTML(models, names) {
    if (!names.length) return EMPTY;
    var h = '<table class="sum"><thead><tr><th>Model</th><th>Health</th><th class="num">Samples</th><th class="num">Samples/s</th>' +
      '<th class="num">Accuracy</th><th class="num">Majority baseline</th><th class="num">Macro F1</th><th>Firing alerts</th></tr></thead><tbody>';
    names.forEach(function (n) {
      var m = models[n] || {}, hl = healthOf(m);
      h += '<tr data-model="' + esc(n) + '" data-health="' + hl + '"' + (hl === 'alert' ? ' class="unhealthy"' : '') + '>' +
        '<td class="name"><a href="#' + anchor(n) + '" title="' + esc(n) + '">' + esc(n) + '</a></td>' +
        '<td>' + healthBadge(hl) + '</td>' +
        '<td class="num" data-col="samples">' + int(m.samples) + '</td>' +
        '<td class="num" data-col="samples_per_second">' + rate(m.samples_per_second) + '</td>' +
        '<td class="num" data-col="accuracy">' + accCell(m) + '</td>' +
        '<td class="num" data-col="majority_baseline_accuracy">' + fix(m.majority_baseline_accuracy, 3) + '</td>' +
        '<td class="num" data-col="macro_f1">' + fix(m.macro && m.macro.f1, 3) + '</td>' +
        '<td class="alerts">' + badges(m) + '</td></tr>';
    });
    return h + '</tbody></table>';
  }
  function metaHTML(rep, names, models) {
    if (!rep) return '';
    var bad = names.filter(function (n) { return healthOf(models[n]) === 'alert'; }).length;
    var h = '<b>' + names.length + '</b> model' + (names.length === 1 ? '' : 's') +
      (bad ? ' \u00b7 <b class="bad">' + bad + ' alerting</b>' : '') + ' \u00b7 window <b>' + esc(st.win) + '</b>';
    var ev = rep.events;
    if (ev && typeof ev === 'object') {
      var rj = ev.rejected && typeof ev.rejected === 'object' ? ev.rejected : {}, tot = 0, parts = [];
      Object.keys(rj).sort().forEach(function (r) { tot += +rj[r] || 0; parts.push(esc(r) + ' ' + int(rj[r])); });
      h += ' \u00b7 events: ' + int(ev.read) + ' read, ' + int(ev.accepted) + ' accepted, ' + int(tot) + ' rejected' + (parts.length ? ' (' + parts.join(', ') + ')' : '');
    }
    return h;
  }

  // ---- per-model details ----
  function classesOf(m) {
    var seen = {}, conf = m.confusion || {};
    Object.keys(m.classes || {}).forEach(function (c) { seen[c] = 1; });
    Object.keys(conf).forEach(function (a) { seen[a] = 1; Object.keys(conf[a] || {}).forEach(function (p) { seen[p] = 1; }); });
    return Object.keys(seen).sort(cmpClass);
  }
  function heatmapHTML(m, cls) {
    var conf = m.confusion || {}, small = cls.length > 15;
    var h = '<div class="scroll hm-wrap"><table class="hm' + (small ? ' small' : '') + '"><thead><tr><th class="corner">actual \u2193 predicted \u2192</th>';
    cls.forEach(function (c) { h += '<th title="predicted ' + esc(c) + '"><span>' + esc(c) + '</span></th>'; });
    h += '</tr></thead><tbody>';
    cls.forEach(function (a) {
      var row = conf[a] || {}, tot = 0;
      Object.keys(row).forEach(function (p) { tot += +row[p] || 0; });
      h += '<tr><th title="actual ' + esc(a) + ': ' + int(tot) + ' samples">' + esc(a) + '</th>';
      cls.forEach(function (p) {
        var n = +row[p] || 0, s = tot > 0 ? n / tot : 0, diag = a === p, al = n > 0 ? 0.1 + 0.9 * s : 0;
        h += '<td class="' + (diag ? 'diag' : 'off') + '" style="background:rgba(' + (diag ? '9,105,218,' : '207,34,46,') + al.toFixed(3) + ')' +
          (al > 0.55 ? ';color:#fff' : '') + '" title="' + esc('actual ' + a + ' \u2192 predicted ' + p + ': ' + int(n) + ' of ' + int(tot) + ' (' + pct(s) + ' of the row)') +
          '" data-actual="' + esc(a) + '" data-predicted="' + esc(p) + '" data-count="' + n + '" data-share="' + s + '">' +
          (small || n === 0 ? '' : Math.round(s * 100) || '<1') + '</td>';
      });
      h += '</tr>';
    });
    return h + '</tbody></table></div><div class="legend">share of the actual row: correct <i class="ld"></i> wrong <i class="lo"></i> \u00b7 hover a cell for its count</div>';
  }
  function bar(x) {
    var w = isNum(x) ? Math.max(0, Math.min(1, x)) : 0, c = !isNum(x) ? '' : x < 0.1 ? ' low' : x < 0.5 ? ' mid' : '';
    return '<div class="bar' + c + '"><i style="width:' + (w * 100).toFixed(1) + '%"></i><span>' + fix(x, 3) + '</span></div>';
  }
  function classTableHTML(m, cls) {
    var C = m.classes || {}, mx = 0;
    cls.forEach(function (c) { var k = C[c] || {}; mx = Math.max(mx, +k.label_share || 0, +k.prediction_share || 0); });
    var h = '<div class="scroll cls-wrap"><table class="cls"><thead><tr><th>Class</th><th class="num">Support</th><th>Precision</th><th>Recall</th><th>F1</th>' +
      '<th title="grey: share of true labels; blue: share of predictions">Label share \u2192 prediction share</th></tr></thead><tbody>';
    cls.forEach(function (c) {
      var k = C[c] || {}, l = +k.label_share || 0, p = +k.prediction_share || 0, skew = Math.abs(p - l) >= 0.2;
      h += '<tr data-class="' + esc(c) + '"><th title="' + esc(c) + '">' + esc(c) + '</th><td class="num">' + int(k.support) + '</td><td>' + bar(k.precision) +
        '</td><td>' + bar(k.recall) + '</td><td>' + bar(k.f1) + '</td><td><div class="share' + (skew ? ' skew' : '') + '"><div class="sb"><i class="l" style="width:' +
        (mx > 0 ? l / mx * 100 : 0).toFixed(1) + '%"></i><i class="p" style="width:' + (mx > 0 ? p / mx * 100 : 0).toFixed(1) + '%"></i></div><span>' +
        pct(k.label_share) + ' \u2192 ' + pct(k.prediction_share) + '</span></div></td></tr>';
    });
    h += '</tbody><tfoot>';
    ['macro', 'weighted', 'micro'].forEach(function (avg) {
      var a = m[avg] || {};
      h += '<tr><th>' + avg + ' avg</th><td class="num">' + int(m.samples) + '</td><td>' + bar(a.precision) + '</td><td>' + bar(a.recall) + '</td><td>' + bar(a.f1) + '</td><td></td></tr>';
    });
    return h + '</tfoot></table></div>';
  }
  function kv(k, v) { return '<span>' + k + ' <b>' + v + '</b></span>'; }
  function summaryLine(n, m) {
    return '<span class="mname">' + esc(n) + '</span>' + healthBadge(healthOf(m)) + '<span class="kv">' +
      kv('samples', int(m.samples)) + ' \u00b7 ' + kv('accuracy', fix(m.accuracy, 3)) + ' vs baseline ' + fix(m.majority_baseline_accuracy, 3) +
      ' \u00b7 ' + kv('macro F1', fix(m.macro && m.macro.f1, 3)) + '</span>' + badges(m);
  }
  function bodyHTML(m) {
    var cls = classesOf(m), al = alertsOf(m), h = '', j = m.join || {};
    if (al.length) {
      h += '<ul class="alerts">';
      al.forEach(function (a) { h += '<li><b>' + esc(alertLabel(a)) + '</b>: ' + esc(alertText(a, m)) + '</li>'; });
      h += '</ul>';
    }
    h += '<div class="stats">' + kv('samples/s', rate(m.samples_per_second)) + kv('balanced accuracy', fix(m.balanced_accuracy, 3)) +
      kv('log loss', fix(m.log_loss, 3)) + kv('imbalance ratio', fix(m.imbalance_ratio, 1)) + kv('classes', cls.length) +
      kv('unmatched predictions', int(j.unmatched_predictions)) + kv('unmatched labels', int(j.unmatched_labels)) + '</div>';
    if (!cls.length) return h + '<p class="empty">No samples in this window.</p>';
    return h + '<div class="grid"><section><h3>Confusion matrix <small>rows actual, columns predicted</small></h3>' + heatmapHTML(m, cls) +
      '</section><section><h3>Per class</h3>' + classTableHTML(m, cls) + '</section></div>';
  }
  function fillBody(el, m) {
    var body = el.querySelector('.mbody');
    if (!m || !body) return;
    var html = bodyHTML(m);
    if (body._html === html) return;
    var pos = [].map.call(body.querySelectorAll('.scroll'), function (w) { return [w.scrollLeft, w.scrollTop]; });
    body.innerHTML = html;
    body._html = html;
    [].forEach.call(body.querySelectorAll('.scroll'), function (w, i) { if (pos[i]) { w.scrollLeft = pos[i][0]; w.scrollTop = pos[i][1]; } });
  }
  function currentModels() {
    var r = st.data && st.data.windows && st.data.windows[st.win];
    return (r && r.models && typeof r.models === 'object') ? r.models : {};
  }
  function onToggle(e) {
    var el = e.currentTarget, name = el.getAttribute('data-model');
    if ((el.open ? '1' : '0') !== el.getAttribute('data-want')) {
      st.user[name] = el.open;
      el.setAttribute('data-want', el.open ? '1' : '0');
    }
    if (el.open) fillBody(el, currentModels()[name]);
  }
  function renderDetails(models, names) {
    var box = $('details'), keep = {};
    names.forEach(function (n, i) {
      var id = anchor(n), el = $(id), m = models[n] || {}, hl = healthOf(m);
      if (!el || el.tagName !== 'DETAILS') {
        el = doc.createElement('details');
        el.id = id;
        el.className = 'model';
        el.setAttribute('data-model', n);
        el.innerHTML = '<summary></summary><div class="mbody"></div>';
        el.addEventListener('toggle', onToggle);
      }
      keep[id] = 1;
      el.classList.toggle('unhealthy', hl === 'alert');
      el.setAttribute('data-health', hl);
      var sum = el.firstChild, sh = summaryLine(n, m);
      if (sum._html !== sh) { sum.innerHTML = sh; sum._html = sh; }
      var want = Object.prototype.hasOwnProperty.call(st.user, n) ? st.user[n] : hl === 'alert';
      el.setAttribute('data-want', want ? '1' : '0');
      if (el.open !== want) el.open = want;
      if (box.children[i] !== el) box.insertBefore(el, box.children[i] || null);
      if (el.open) fillBody(el, m);
    });
    [].slice.call(box.children).forEach(function (c) { if (!keep[c.id]) box.removeChild(c); });
  }

  // ---- page ----
  function two(n) { return (n < 10 ? '0' : '') + n; }
  function clock(d) { return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds()); }
  function showStatus() {
    var s = $('status');
    s.className = 'status' + (st.err ? ' err' : '');
    s.textContent = st.err ? 'refresh failed (' + st.err + ')' + (st.okAt ? ', showing data from ' + clock(st.okAt) : '')
      : st.okAt ? 'updated ' + clock(st.okAt) + ', every ' + EVERY_MS / 1000 + ' s' : 'loading\u2026';
  }
  function pickWindow(ws) {
    if (ws.indexOf(st.win) >= 0) return st.win;
    var q = new URLSearchParams(location.search).get('window'), dflt = doc.body.getAttribute('data-default-window');
    var c = [q, dflt, '5m'];
    for (var i = 0; i < c.length; i++) if (c[i] && ws.indexOf(c[i]) >= 0) return c[i];
    return ws.length ? ws[0] : null;
  }
  function render() {
    var d = st.data, ws = windowsOf(d), sel = $('window');
    st.win = pickWindow(ws);
    if (ws.join('\n') !== st.wins) {
      sel.innerHTML = ws.map(function (w) { return '<option value="' + esc(w) + '">' + esc(w) + '</option>'; }).join('');
      st.wins = ws.join('\n');
    }
    if (st.win !== null) sel.value = st.win;
    var rep = st.win !== null ? d.windows[st.win] : null, models = currentModels(), names = sortedNames(models);
    $('meta').innerHTML = metaHTML(rep, names, models);
    $('summary').innerHTML = summaryHTML(models, names);
    renderDetails(models, names);
    showStatus();
    st.renders += 1;
    root.setAttribute('data-renders', String(st.renders));
  }
  function refresh() {
    clearTimeout(st.timer);
    if (doc.hidden && st.data) { st.timer = setTimeout(refresh, EVERY_MS); return; }
    fetch(API, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (d) { st.data = d && typeof d === 'object' ? d : {}; st.err = null; st.okAt = new Date(); render(); })
      .catch(function (e) { st.err = e && e.message || 'error'; showStatus(); })
      .then(function () { st.timer = setTimeout(refresh, EVERY_MS); });
  }
  $('window').addEventListener('change', function (e) {
    st.win = e.target.value;
    var u = new URL(location.href);
    u.searchParams.set('window', st.win);
    history.replaceState(null, '', u.pathname + u.search + u.hash);
    if (st.data) render();
  });
  $('winform').addEventListener('submit', function (e) { e.preventDefault(); });
  $('summary').addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('a[href^="#m-"]'), el = a && $(a.getAttribute('href').slice(1));
    if (el && el.tagName === 'DETAILS' && !el.open) { st.user[el.getAttribute('data-model')] = true; el.setAttribute('data-want', '1'); el.open = true; }
  });
  doc.addEventListener('visibilitychange', function () { if (!doc.hidden) refresh(); });
  showStatus();
  refresh();
})();
