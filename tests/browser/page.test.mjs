// Headless-browser test of predmon's status page (GET /), as a person sees it.
//
//   PREDMON_URL=http://127.0.0.1:9100 node tests/browser/page.test.mjs
//
// Needs `npm install --prefix tests/browser` (playwright-core) and Debian's chromium at /usr/bin/chromium
// (or CHROMIUM=/path). Without the daemon, run it against the static stand-in:
//   PREDMON_PAGE_OUT=/tmp/page.html cargo test page::tests::write_fixture_page -- --ignored
//   python3 tests/browser/serve_fixture.py --html /tmp/page.html --port 8765 &
//   PREDMON_URL=http://127.0.0.1:8765 node tests/browser/page.test.mjs
// Saves a screenshot (target/page.png, or $PREDMON_SCREENSHOT). Prints "N passed, N failed"; exits 1 on any failure.
//   PREDMON_EXPECT_COLLAPSED=fraud-v3  the model that must be shown collapsed: prediction_collapse in the default
//                                      window, marked unhealthy, listed first, its heatmap dominated by the column
//                                      of the class it predicts most (scripts/e2e-browser.sh sets it)
//   PREDMON_LIVE=1                     a live daemon, waited for until every check has data: a check that finds
//                                      nothing to check (a skip) fails instead (scripts/e2e-browser.sh sets it)
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const BASE = process.env.PREDMON_URL;
const EXPECT_COLLAPSED = process.env.PREDMON_EXPECT_COLLAPSED || '';
const LIVE = !!process.env.PREDMON_LIVE && process.env.PREDMON_LIVE !== '0';
if (!BASE) {
  console.error('set PREDMON_URL to a running predmon, e.g. PREDMON_URL=http://127.0.0.1:9100');
  process.exit(2);
}
const base = BASE.replace(/\/*$/, '/');
const at = (p) => new URL(p, base).href;
// CI writes the screenshot under target/; PREDMON_SCREENSHOT=docs/img/page.png refreshes the README's.
const SHOT = process.env.PREDMON_SCREENSHOT
  || fileURLToPath(new URL('../../target/page.png', import.meta.url));
const WIDTH = 1400;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let passed = 0, failed = 0, skipped = 0;
async function check(name, fn) {
  try {
    const r = await fn();
    if (typeof r === 'string' && r.startsWith('skip')) {
      const why = r.slice(4).replace(/^:\s*/, '');
      if (LIVE) throw new Error(`nothing to check against the live daemon${why ? `: ${why}` : ''} (a skip fails with PREDMON_LIVE)`);
      skipped++; console.log(`skip ${name}${why ? ` (${why})` : ''}`); return;
    }
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${String(e && e.stack || e).split('\n').slice(0, 3).join('\n     ')}`);
  }
}
function assert(c, msg) { if (!c) throw new Error(msg); }
const near = (shown, api, decimals) => Math.abs(shown - api) <= 0.5 * 10 ** -decimals + 1e-9;
const decimalsOf = (s) => (s.split('.')[1] || '').length;
const parseNum = (s) => Number(String(s).replace(/,/g, '').trim());
const attr = (s) => String(s).replace(/["\\]/g, '\\$&');
const alertsOf = (m) => (m && Array.isArray(m.alerts) ? m.alerts : []);
const winSecs = (w) => { const m = /^(\d+)(s|m|h|d|w)$/.exec(w); return m ? +m[1] * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]] : Infinity; };
const sortWindows = (ws) => [...ws].sort((a, b) => (winSecs(a) - winSecs(b)) || (a < b ? -1 : a > b ? 1 : 0));

async function getJSON(path) {
  const r = await fetch(at(path), { headers: { Accept: 'application/json' } });
  assert(r.ok, `GET ${path}: HTTP ${r.status}`);
  return r.json();
}

// Reads the summary table as shown.
async function readTable(page) {
  return page.$$eval('#summary table.sum tbody tr', (trs) => trs.map((tr) => {
    const col = (c) => { const td = tr.querySelector(`td[data-col="${c}"]`); return td ? (td.querySelector('.v') || td).textContent.trim() : null; };
    const bg = getComputedStyle(tr.querySelector('td')).backgroundColor;
    return {
      model: tr.getAttribute('data-model'), health: tr.getAttribute('data-health'), unhealthy: tr.classList.contains('unhealthy'),
      nameText: tr.querySelector('td').textContent, badge: tr.children[1].textContent.trim(), bg,
      samples: col('samples'), rate: col('samples_per_second'), accuracy: col('accuracy'),
      baseline: col('majority_baseline_accuracy'), macroF1: col('macro_f1'),
      alerts: [...tr.querySelectorAll('td.alerts .badge')].map((b) => ({ text: b.textContent, title: b.title })),
    };
  }));
}

function checkRowsAgainst(rows, models, where) {
  const names = Object.keys(models);
  assert(rows.length === names.length, `${where}: ${rows.length} rows for ${names.length} models`);
  assert([...rows.map((r) => r.model)].sort().join('\n') === [...names].sort().join('\n'), `${where}: rows ${rows.map((r) => r.model)} vs API ${names}`);
  for (const r of rows) {
    const m = models[r.model];
    assert(r.nameText === r.model, `${where}: name shown as ${JSON.stringify(r.nameText)} for ${JSON.stringify(r.model)}`);
    assert(parseNum(r.samples) === m.samples, `${where}/${r.model}: samples ${r.samples} vs ${m.samples}`);
    for (const [shown, api, what] of [[r.accuracy, m.accuracy, 'accuracy'], [r.baseline, m.majority_baseline_accuracy, 'majority baseline'],
      [r.macroF1, m.macro && m.macro.f1, 'macro F1'], [r.rate, m.samples_per_second, 'samples/s']]) {
      if (api === null || api === undefined) { assert(shown === '\u2013', `${where}/${r.model}: ${what} null shown as ${shown}`); continue; }
      assert(near(parseNum(shown), api, decimalsOf(shown)), `${where}/${r.model}: ${what} shown ${shown}, API ${api}`);
    }
  }
}

function checkHealth(rows, models, where) {
  let seenHealthy = false;
  for (const r of rows) {
    const bad = alertsOf(models[r.model]).length > 0;
    assert(bad === (r.health === 'alert') && bad === r.unhealthy, `${where}/${r.model}: ${alertsOf(models[r.model]).length} alerts but data-health=${r.health}, unhealthy=${r.unhealthy}`);
    assert(bad === (r.badge === 'ALERT'), `${where}/${r.model}: health badge "${r.badge}"`);
    assert(r.alerts.length === alertsOf(models[r.model]).length, `${where}/${r.model}: ${r.alerts.length} alert badges`);
    if (bad) {
      assert(!seenHealthy, `${where}: unhealthy ${r.model} listed after a healthy model`);
      const [red, green] = r.bg.match(/\d+/g).map(Number);
      assert(red > green + 10, `${where}/${r.model}: unhealthy row background ${r.bg} is not red`);
    } else seenHealthy = true;
  }
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ARGS });
try {
  const api = await getJSON('api/v1/models');
  const windows = sortWindows(Object.keys(api.windows || {}));
  const defaultWin = windows.includes('5m') ? '5m' : windows[0];

  // ---- the page with JavaScript; timers are faked so the page refreshes only when the test says so ----
  const ctx = await browser.newContext({ viewport: { width: WIDTH, height: 900 } });
  const page = await ctx.newPage();
  const requests = [], errors = [], bodies = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('response', (r) => { if (new URL(r.url()).pathname.endsWith('/api/v1/models')) bodies.push(r.json()); });
  await page.clock.install();
  const res = await page.goto(base, { waitUntil: 'load' });
  const renders = () => page.evaluate(() => Number(document.documentElement.getAttribute('data-renders') || 0));
  const waitRenders = (n) => page.waitForFunction((k) => Number(document.documentElement.getAttribute('data-renders') || 0) >= k, n, { timeout: 10000 });

  await check('GET / is an HTML page that renders itself from api/v1/models', async () => {
    assert(res.ok(), `HTTP ${res.status()}`);
    assert(/text\/html/.test(res.headers()['content-type'] || ''), `content-type ${res.headers()['content-type']}`);
    await waitRenders(1);
    const status = await page.textContent('#status');
    assert(/^updated \d\d:\d\d:\d\d/.test(status), `status "${status}"`);
    assert(bodies.length === 1, `${bodies.length} API fetches`);
  });
  // what the page rendered, exactly (a live daemon moves on between two fetches)
  const shownApi = bodies.length ? await bodies[0] : api;
  const modelsIn = (d, w) => (d.windows && d.windows[w] && d.windows[w].models) || {};

  await check('header shows predmon, version, refresh time and links to metrics and the API', async () => {
    const h = await page.textContent('header');
    assert(/predmon/.test(h) && /v\S+/.test(await page.textContent('.ver')), `header "${h}"`);
    for (const href of ['metrics', 'api/v1/models']) {
      const a = await page.$(`header a[href="${href}"]`);
      assert(a, `no link to ${href}`);
      const r = await fetch(await a.evaluate((el) => el.href));
      assert(r.ok, `${href}: HTTP ${r.status}`);
    }
  });

  await check(`table lists every model of the default window (${defaultWin})`, async () => {
    assert(await page.inputValue('#window') === defaultWin, `window select is ${await page.inputValue('#window')}`);
    const opts = await page.$$eval('#window option', (os) => os.map((o) => o.value));
    assert(opts.join() === windows.join(), `window options ${opts} vs API ${windows}`);
    const ownNames = Object.keys(modelsIn(api, defaultWin)).sort().join();
    assert(Object.keys(modelsIn(shownApi, defaultWin)).sort().join() === ownNames, 'page and test saw different models');
    checkRowsAgainst(await readTable(page), modelsIn(shownApi, defaultWin), defaultWin);
    if (!Object.keys(modelsIn(shownApi, defaultWin)).length) assert((await page.textContent('#summary')).includes('No models yet'), 'no "No models yet" message');
  });

  await check('models with firing alerts are marked unhealthy (red, data-health="alert") and listed first', async () => {
    const models = modelsIn(shownApi, defaultWin);
    checkHealth(await readTable(page), models, defaultWin);
    const det = await page.$$eval('#details details.model', (ds) => ds.map((d) => ({ model: d.getAttribute('data-model'), open: d.open, unhealthy: d.classList.contains('unhealthy') })));
    assert(det.length === Object.keys(models).length, `${det.length} details sections`);
    for (const d of det) {
      const bad = alertsOf(models[d.model]).length > 0;
      assert(d.open === bad && d.unhealthy === bad, `${d.model}: details open=${d.open} unhealthy=${d.unhealthy} with ${alertsOf(models[d.model]).length} alerts`);
    }
  });

  await check('alerts are explained in words', async () => {
    const models = modelsIn(shownApi, defaultWin);
    let n = 0;
    for (const [name, m] of Object.entries(models)) {
      if (!alertsOf(m).length) continue;
      const items = await page.$$eval(`#details details.model[data-model="${attr(name)}"] ul.alerts li`, (ls) => ls.map((l) => l.textContent));
      const text = items.join('\n');
      for (const a of alertsOf(m)) {
        const c = a.class, k = (m.classes || {})[c] || {};
        const pctNear = (s, x) => Math.abs(parseFloat(s) - x * 100) <= 0.6;
        if (a.alert === 'prediction_collapse') {
          const mm = new RegExp(`predicts class ${c.replace(/\W/g, '\\$&')} for ([\\d.]+)% of samples while ([\\d.]+)% are class`).exec(text);
          assert(mm && pctNear(mm[1], k.prediction_share) && pctNear(mm[2], k.label_share), `${name}: no prediction_collapse words in ${JSON.stringify(text)}`);
        } else if (a.alert === 'recall_collapse') {
          const mm = new RegExp(`recall of class ${c.replace(/\W/g, '\\$&')} is ([\\d.]+) over ([\\d,]+) true samples`).exec(text);
          assert(mm && near(+mm[1], k.recall, 2) && parseNum(mm[2]) === k.support, `${name}: no recall_collapse words in ${JSON.stringify(text)}`);
        } else if (a.alert === 'near_chance') {
          assert(/accuracy [\d.]+ is (within [\d.]+ of|not above) the majority baseline [\d.]+/.test(text), `${name}: no near_chance words in ${JSON.stringify(text)}`);
        } else if (a.alert === 'label_imbalance') {
          assert(text.includes(`label imbalance ratio ${m.imbalance_ratio.toFixed(1)}`), `${name}: no label_imbalance words in ${JSON.stringify(text)}`);
        }
        n++;
      }
    }
    return n ? undefined : 'skip: no model has alerts';
  });

  await check('heatmaps are row-normalised confusion matrices; the collapsed model has one dominant column', async () => {
    const models = modelsIn(shownApi, defaultWin);
    let collapsed = 0;
    for (const [name, m] of Object.entries(models)) {
      const sel = `#details details.model[data-model="${attr(name)}"]`;
      if (!(await page.$eval(sel, (d) => d.open))) continue;
      const cells = await page.$$eval(`${sel} table.hm td`, (tds) => tds.map((td) => ({
        a: td.dataset.actual, p: td.dataset.predicted, n: Number(td.dataset.count), s: Number(td.dataset.share), title: td.title })));
      const classes = Object.keys(m.classes || {});
      assert(cells.length === classes.length ** 2, `${name}: ${cells.length} cells for ${classes.length} classes`);
      const rows = {};
      for (const c of cells) {
        const want = (m.confusion[c.a] || {})[c.p] || 0;
        assert(c.n === want, `${name}: cell ${c.a}->${c.p} count ${c.n}, API ${want}`);
        assert(c.title.includes(`: ${want.toLocaleString('en-US')} of `), `${name}: cell ${c.a}->${c.p} title "${c.title}" lacks the count`);
        (rows[c.a] = rows[c.a] || []).push(c);
      }
      for (const [a, cs] of Object.entries(rows)) {
        const tot = cs.reduce((x, c) => x + c.n, 0);
        const sum = cs.reduce((x, c) => x + c.s, 0);
        assert(tot === 0 || Math.abs(sum - 1) < 1e-9, `${name}: row ${a} shares sum to ${sum}`);
      }
      const pc = alertsOf(m).find((a) => a.alert === 'prediction_collapse');
      if (!pc) continue;
      collapsed++;
      const dominant = new Set(Object.entries(rows).filter(([, cs]) => cs.some((c) => c.n > 0))
        .map(([, cs]) => cs.reduce((b, c) => (c.s > b.s ? c : b)).p));
      assert(dominant.size === 1 && dominant.has(pc.class), `${name}: dominant columns ${[...dominant]}, expected only ${pc.class}`);
      const recalls = await page.$$eval(`${sel} table.cls tbody tr`, (trs) => trs.map((tr) => [tr.dataset.class, tr.children[3].textContent.trim()]));
      for (const [c, r] of recalls) assert(near(+r, m.classes[c].recall, 3), `${name}: recall bar of ${c} shows ${r}, API ${m.classes[c].recall}`);
    }
    return collapsed ? undefined : 'skip: no model has prediction_collapse';
  });

  if (EXPECT_COLLAPSED) {
    await check(`${EXPECT_COLLAPSED} is shown collapsed: unhealthy, listed first, its heatmap dominated by the class it predicts most`, async () => {
      const models = modelsIn(shownApi, defaultWin);
      const m = models[EXPECT_COLLAPSED];
      assert(m, `${EXPECT_COLLAPSED} not in the ${defaultWin} window: ${Object.keys(models)}`);
      const pc = alertsOf(m).find((a) => a.alert === 'prediction_collapse');
      assert(pc, `${EXPECT_COLLAPSED} has no prediction_collapse in ${defaultWin}: alerts ${JSON.stringify(alertsOf(m))}`);
      const cls = Object.entries(m.classes || {});
      const top = cls.reduce((b, [c, k]) => (b === null || k.prediction_share > m.classes[b].prediction_share ? c : b), null);
      assert(pc.class === top, `prediction_collapse names ${pc.class}, but ${EXPECT_COLLAPSED} predicts ${top} most`);
      const rows = await readTable(page);
      assert(rows.length && rows[0].model === EXPECT_COLLAPSED, `first row is ${rows.length && rows[0].model}`);
      const r = rows[0];
      assert(r.unhealthy && r.health === 'alert' && r.badge === 'ALERT', `${EXPECT_COLLAPSED}: unhealthy=${r.unhealthy} data-health=${r.health} badge "${r.badge}"`);
      const [red, green] = r.bg.match(/\d+/g).map(Number);
      assert(red > green + 10, `${EXPECT_COLLAPSED}: row background ${r.bg} is not red`);
      assert(r.alerts.some((b) => b.text === `prediction collapse \u00b7 ${top}`), `${EXPECT_COLLAPSED}: badges ${r.alerts.map((b) => b.text)}`);
      const sel = `#details details.model[data-model="${attr(EXPECT_COLLAPSED)}"]`;
      const first = await page.$eval('#details details.model', (d) => d.getAttribute('data-model'));
      assert(first === EXPECT_COLLAPSED, `first details section is ${first}`);
      assert(await page.$eval(sel, (d) => d.open && d.classList.contains('unhealthy')), `${EXPECT_COLLAPSED}: details not open and unhealthy`);
      const cells = await page.$$eval(`${sel} table.hm td`, (tds) => tds.map((td) => ({
        a: td.dataset.actual, p: td.dataset.predicted, n: Number(td.dataset.count), s: Number(td.dataset.share) })));
      assert(cells.length === cls.length ** 2, `${cells.length} heatmap cells for ${cls.length} classes`);
      // every true class with samples has its largest share in the predicted-majority column, and that column holds the most samples
      const byRow = {}, colTot = {};
      for (const c of cells) { (byRow[c.a] = byRow[c.a] || []).push(c); colTot[c.p] = (colTot[c.p] || 0) + c.n; }
      let nonEmpty = 0;
      for (const [a, cs] of Object.entries(byRow)) {
        if (!cs.some((c) => c.n > 0)) continue;
        nonEmpty++;
        const best = cs.reduce((b, c) => (c.s > b.s ? c : b));
        assert(best.p === top, `${EXPECT_COLLAPSED}: row ${a} is dominated by column ${best.p} (${best.s}), expected ${top}`);
      }
      assert(nonEmpty >= 2, `${EXPECT_COLLAPSED}: only ${nonEmpty} true classes have samples`);
      const heaviest = Object.entries(colTot).reduce((b, e) => (e[1] > b[1] ? e : b))[0];
      assert(heaviest === top, `${EXPECT_COLLAPSED}: heaviest heatmap column ${heaviest}, expected ${top}`);
    });
  }

  await check('the page fits 1400px; wide heatmaps scroll inside their box', async () => {
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= WIDTH, `document is ${w}px wide`);
  });

  await check('the window select changes the table and survives a refresh', async () => {
    const other = windows.find((w) => w !== defaultWin && JSON.stringify(Object.entries(modelsIn(shownApi, w)).map(([k, m]) => [k, m.samples])) !==
      JSON.stringify(Object.entries(modelsIn(shownApi, defaultWin)).map(([k, m]) => [k, m.samples])));
    if (!other) return `skip: every window holds the same samples (${windows.join(', ')})`;
    const before = await readTable(page);
    const n = await renders();
    await page.selectOption('#window', other);
    await waitRenders(n + 1);
    const after = await readTable(page);
    assert(JSON.stringify(after.map((r) => [r.model, r.samples])) !== JSON.stringify(before.map((r) => [r.model, r.samples])), 'table did not change');
    checkRowsAgainst(after, modelsIn(shownApi, other), other);
    checkHealth(after, modelsIn(shownApi, other), other);
    assert(new URL(page.url()).searchParams.get('window') === other, `URL ${page.url()}`);
    assert((await page.textContent('#meta')).includes(`window ${other}`), 'meta line does not name the window');
    const fetches = bodies.length;
    await page.clock.runFor(5100);
    await page.waitForFunction((k) => Number(document.documentElement.getAttribute('data-renders')) >= k, n + 2, { timeout: 10000 });
    assert(bodies.length === fetches + 1, `refresh made ${bodies.length - fetches} fetches`);
    assert(await page.inputValue('#window') === other, 'window reset by refresh');
    checkRowsAgainst(await readTable(page), modelsIn(await bodies[bodies.length - 1], other), `${other} after refresh`);
    await page.selectOption('#window', defaultWin);
    await waitRenders(n + 3);
  });

  await check('no request leaves the origin; no script errors', async () => {
    const origin = new URL(base).origin;
    const foreign = requests.filter((u) => !u.startsWith('data:') && new URL(u).origin !== origin);
    assert(!foreign.length, `foreign requests: ${foreign}`);
    assert(!errors.length, `errors: ${errors.join(' | ')}`);
  });

  await check(`screenshot ${SHOT}`, async () => {
    mkdirSync(dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: true });
  });
  await ctx.close();

  // ---- 20 models x 50 classes, hostile names: served by the test itself through request interception ----
  await check('20 models x 50 classes stay readable; names are shown as text, never markup', async () => {
    const big = synthetic();
    const c2 = await browser.newContext({ viewport: { width: WIDTH, height: 900 } });
    const p2 = await c2.newPage();
    const errs = [];
    p2.on('pageerror', (e) => errs.push(String(e)));
    p2.on('dialog', (d) => { errs.push(`dialog: ${d.message()}`); d.dismiss(); });
    await p2.route('**/api/v1/models', (r) => r.fulfill({ contentType: 'application/json', body: JSON.stringify(big) }));
    await p2.clock.install();
    await p2.goto(base);
    await p2.waitForFunction(() => Number(document.documentElement.getAttribute('data-renders')) >= 1, null, { timeout: 15000 });
    const models = big.windows['5m'].models;
    const rows = await readTable(p2);
    checkRowsAgainst(rows, models, 'synthetic');
    checkHealth(rows, models, 'synthetic');
    assert(await p2.$$eval('#summary img, #details img, #summary script, #details script', (x) => x.length) === 0, 'markup from names was injected');
    const layout = await p2.evaluate(() => {
      const d = document.querySelector('details.model[open]');
      const wrap = d.querySelector('.hm-wrap'), th = d.querySelector('.hm thead th');
      return { docW: document.documentElement.scrollWidth, open: document.querySelectorAll('details.model[open]').length,
        cells: d.querySelectorAll('.hm td').length, wrapScroll: wrap.scrollWidth > wrap.clientWidth || wrap.scrollHeight > wrap.clientHeight,
        wrapW: wrap.getBoundingClientRect().width, sticky: getComputedStyle(th).position, rowSticky: getComputedStyle(d.querySelector('.hm tbody th')).position };
    });
    assert(layout.docW <= WIDTH, `document is ${layout.docW}px wide`);
    assert(layout.open === 2, `${layout.open} details open, expected the 2 unhealthy`);
    assert(layout.cells === 2500, `${layout.cells} heatmap cells`);
    assert(layout.wrapW <= WIDTH, `heatmap box ${layout.wrapW}px`);
    assert(layout.sticky === 'sticky' && layout.rowSticky === 'sticky', `headers not sticky: ${layout.sticky}/${layout.rowSticky}`);
    assert(!errs.length, errs.join(' | '));
    await c2.close();
  });

  // ---- without JavaScript: the server-rendered table ----
  await check('without JavaScript the page still shows the table with every model', async () => {
    const c3 = await browser.newContext({ javaScriptEnabled: false, viewport: { width: WIDTH, height: 900 } });
    const p3 = await c3.newPage();
    const own = await getJSON('api/v1/models');
    await p3.goto(base);
    const win = await p3.$eval('#window option[selected]', (o) => o.value).catch(() => null);
    assert(win, 'no window selected in the server-rendered select');
    const rows = await readTable(p3);
    const names = Object.keys(modelsIn(own, win));
    assert(rows.length === names.length && names.every((n) => rows.some((r) => r.model === n)), `no-JS rows ${rows.map((r) => r.model)} vs ${names}`);
    checkHealth(rows, modelsIn(own, win), `no-JS ${win}`);
    await c3.close();
  });
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);

// A 5m window with 20 models of 50 classes each; two of them alerting; one hostile model and class name.
function synthetic() {
  const classes = Array.from({ length: 50 }, (_, i) => (i === 7 ? '<b>x</b>' : `class_${String(i).padStart(2, '0')}`));
  const models = {};
  for (let k = 0; k < 20; k++) {
    const name = k === 3 ? 'z<script>alert(1)</script>' : k === 5 ? 'y"><img src=x onerror=alert(2)>' : `model-${String(k).padStart(2, '0')}`;
    const conf = {}, cls = {};
    let n = 0;
    for (const [i, a] of classes.entries()) {
      conf[a] = {};
      const sup = 20 + ((i * 37 + k * 11) % 60);
      const right = k === 3 ? 0 : Math.round(sup * 0.8);
      conf[a][k === 3 ? classes[0] : a] = right || sup;
      if (right) conf[a][classes[(i + 1) % 50]] = sup - right;
      n += sup;
    }
    for (const c of classes) {
      let tp = (conf[c] || {})[c] || 0, sup = 0, pred = 0;
      for (const a of classes) { sup += a === c ? Object.values(conf[a]).reduce((x, y) => x + y, 0) : 0; pred += conf[a][c] || 0; }
      const p = pred ? tp / pred : 0, r = sup ? tp / sup : 0;
      cls[c] = { precision: p, recall: r, f1: 2 * tp / (sup + pred || 1), support: sup, predicted: pred, tp, fp: pred - tp, fn: sup - tp, tn: n - sup - pred + tp, label_share: sup / n, prediction_share: pred / n };
    }
    const acc = classes.reduce((x, c) => x + cls[c].tp, 0) / n;
    const alerts = k === 3 ? [{ alert: 'prediction_collapse', class: classes[0] }, { alert: 'recall_collapse', class: '<b>x</b>' }]
      : k === 5 ? [{ alert: 'label_imbalance', class: '' }] : [];
    models[name] = { samples: n, accuracy: acc, balanced_accuracy: acc, majority_baseline_accuracy: 0.03, log_loss: null, samples_per_second: n / 300,
      imbalance_ratio: 3.9, micro: { precision: acc, recall: acc, f1: acc }, macro: { precision: acc, recall: acc, f1: acc }, weighted: { precision: acc, recall: acc, f1: acc },
      classes: cls, confusion: conf, alerts, join: { unmatched_predictions: 0, unmatched_labels: 0 } };
  }
  return { windows: { '5m': { window: { length_seconds: 300, bucket_seconds: 10, end: 0 }, events: { read: 1, accepted: 1, rejected: {} }, models } } };
}
