//! Owns the status page at `GET /`: one self-contained HTML document showing every model's health.
//!
//! The CSS and JS in `assets/` are inlined (no external requests). The summary table for the
//! default window is rendered here, so the page reads without JavaScript; the JS (`assets/page.js`)
//! polls the relative URL `api/v1/models` every 5 s and replaces it, adding per-model confusion
//! heatmaps and per-class bars. The formatting helpers below mirror the JS ones so both tables
//! read the same. Every string taken from the data (model, class, window names) is HTML-escaped.

use serde_json::{Map, Value};

const TEMPLATE: &str = include_str!("assets/index.html");
const CSS: &str = include_str!("assets/page.css");
const JS: &str = include_str!("assets/page.js");

const DASH: &str = "\u{2013}";
const EMPTY: &str =
    "<p class=\"empty\">No models yet: predmon has not accepted an event for any model.</p>";

/// Renders the whole page. `api` is the `/api/v1/models` document
/// (`{"windows": {"5m": <report object>, ...}}`); the summary table is rendered for
/// `default_window` when the document has it, else `5m`, else the shortest window.
/// The JS starts on the same window unless the URL has `?window=NAME`. `metrics_path` is
/// the server's telemetry path; links are relative (`metrics`, not `/metrics`) so that the
/// page works behind a proxy that serves predmon under a prefix.
pub fn render_index(
    api: &Value,
    version: &str,
    default_window: &str,
    metrics_path: &str,
) -> String {
    let windows = window_names(api);
    let chosen = pick_window(&windows, default_window);
    let report = chosen.and_then(|w| api.get("windows")?.get(w));
    let empty = Map::new();
    let models = report
        .and_then(|r| r.get("models"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let names = sorted_names(models);

    let mut out =
        String::with_capacity(TEMPLATE.len() + CSS.len() + JS.len() + 1024 + 600 * names.len());
    let mut rest = TEMPLATE;
    while let Some(start) = rest.find("<!--@") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        let Some(end) = after.find("-->") else {
            break;
        };
        match &after[..end] {
            "css" => out.push_str(CSS),
            "js" => out.push_str(JS),
            "version" => out.push_str(&esc(version)),
            "metrics" => out.push_str(&esc(metrics_path.trim_start_matches('/'))),
            "window" => out.push_str(&esc(chosen.unwrap_or(default_window))),
            "options" => {
                for w in &windows {
                    let sel = if Some(w.as_str()) == chosen {
                        " selected"
                    } else {
                        ""
                    };
                    out.push_str(&format!("<option value=\"{0}\"{sel}>{0}</option>", esc(w)));
                }
            }
            "meta" => {
                if let (Some(w), Some(r)) = (chosen, report) {
                    out.push_str(&meta_html(w, r, models, &names));
                }
            }
            "summary" => out.push_str(&summary_html(models, &names)),
            _ => {}
        }
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn f(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn fix(x: Option<f64>, d: usize) -> String {
    x.map_or_else(|| DASH.to_string(), |x| format!("{x:.d$}"))
}

fn int(x: Option<f64>) -> String {
    let Some(x) = x else { return DASH.to_string() };
    let digits = format!("{:.0}", x.round().abs());
    let mut o = String::new();
    if x.round() < 0.0 {
        o.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            o.push(',');
        }
        o.push(ch);
    }
    o
}

fn rate(x: Option<f64>) -> String {
    match x {
        None => DASH.to_string(),
        Some(x) => fix(
            Some(x),
            if x.abs() >= 100.0 {
                0
            } else if x.abs() >= 10.0 {
                1
            } else {
                2
            },
        ),
    }
}

fn pct(x: Option<f64>) -> String {
    let Some(x) = x else { return DASH.to_string() };
    let p = x * 100.0;
    let r = p.round();
    if r == 0.0 && p > 0.0 {
        return if p < 0.1 {
            "<0.1%".into()
        } else {
            format!("{p:.1}%")
        };
    }
    if r == 100.0 && p < 100.0 {
        return format!("{:.1}%", (p * 10.0).floor() / 10.0);
    }
    format!("{r:.0}%")
}

fn window_secs(w: &str) -> f64 {
    let unit_at = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
    let (n, unit) = w.split_at(unit_at);
    let mult = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 604800.0,
        _ => return f64::INFINITY,
    };
    n.parse::<f64>().map_or(f64::INFINITY, |n| n * mult)
}

/// Window names, shortest first, `all` and anything unparsable last (as the JS orders them).
fn window_names(api: &Value) -> Vec<String> {
    let mut w: Vec<String> = api
        .get("windows")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    w.sort_by(|a, b| {
        window_secs(a)
            .total_cmp(&window_secs(b))
            .then_with(|| a.cmp(b))
    });
    w
}

fn pick_window<'a>(windows: &'a [String], default_window: &str) -> Option<&'a str> {
    [default_window, "5m"]
        .iter()
        .find_map(|c| windows.iter().find(|w| w.as_str() == *c))
        .or_else(|| windows.first())
        .map(String::as_str)
}

fn alerts(m: &Value) -> &[Value] {
    m.get("alerts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Models with a firing alert first, then by name.
fn sorted_names(models: &Map<String, Value>) -> Vec<&str> {
    let mut n: Vec<&str> = models.keys().map(String::as_str).collect();
    n.sort_by_key(|k| (alerts(&models[*k]).is_empty(), *k));
    n
}

fn health(m: &Value) -> &'static str {
    if !alerts(m).is_empty() {
        "alert"
    } else if f(m.get("samples")).is_some_and(|s| s > 0.0) {
        "ok"
    } else {
        "idle"
    }
}

fn health_badge(h: &str) -> &'static str {
    match h {
        "alert" => "<span class=\"badge b-alert\">ALERT</span>",
        "ok" => "<span class=\"badge b-ok\">OK</span>",
        _ => "<span class=\"badge\">NO SAMPLES</span>",
    }
}

fn alert_class(a: &Value) -> String {
    match a.get("class") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn alert_label(a: &Value) -> String {
    let c = alert_class(a);
    let name = a
        .get("alert")
        .and_then(Value::as_str)
        .unwrap_or("alert")
        .replace('_', " ");
    if c.is_empty() {
        name
    } else {
        format!("{name} \u{b7} {c}")
    }
}

/// The alert in words, e.g. "predicts class 0 for 97% of samples while 55% are class 0".
fn alert_text(a: &Value, m: &Value) -> String {
    let c = alert_class(a);
    let k = m
        .get("classes")
        .and_then(|cs| cs.get(&c))
        .unwrap_or(&Value::Null);
    let name = a.get("alert").and_then(Value::as_str).unwrap_or("alert");
    match name {
        "prediction_collapse" => format!(
            "predicts class {c} for {} of samples while {} are class {c}",
            pct(f(k.get("prediction_share"))),
            pct(f(k.get("label_share")))
        ),
        "recall_collapse" => format!(
            "recall of class {c} is {} over {} true samples",
            fix(f(k.get("recall")), 2),
            int(f(k.get("support")))
        ),
        "near_chance" => match (f(m.get("accuracy")), f(m.get("majority_baseline_accuracy"))) {
            (Some(acc), Some(base)) if acc <= base => {
                format!("accuracy {acc:.3} is not above the majority baseline {base:.3}")
            }
            (Some(acc), Some(base)) => {
                let d = ((acc - base) * 100.0 - 1e-9).ceil().max(1.0) / 100.0;
                format!("accuracy {acc:.3} is within {d:.2} of the majority baseline {base:.3}")
            }
            _ => "accuracy is near the majority baseline".into(),
        },
        "label_imbalance" => {
            let mut hi: Option<(&str, f64)> = None;
            let mut lo: Option<(&str, f64)> = None;
            if let Some(cs) = m.get("classes").and_then(Value::as_object) {
                for (n, k) in cs {
                    let Some(s) = f(k.get("support")).filter(|s| *s > 0.0) else {
                        continue;
                    };
                    if !hi.is_some_and(|h| h.1 >= s) {
                        hi = Some((n, s));
                    }
                    if !lo.is_some_and(|l| l.1 <= s) {
                        lo = Some((n, s));
                    }
                }
            }
            let detail = match (hi, lo) {
                (Some(h), Some(l)) => format!(
                    " (class {}: {} true samples, class {}: {})",
                    h.0,
                    int(Some(h.1)),
                    l.0,
                    int(Some(l.1))
                ),
                _ => String::new(),
            };
            format!(
                "label imbalance ratio {}{detail}",
                fix(f(m.get("imbalance_ratio")), 1)
            )
        }
        "distribution_shift" => {
            let d = m.get("drift").unwrap_or(&Value::Null);
            format!(
                "predicted classes moved from the reference period: PSI {} over {} predictions",
                fix(f(d.get("prediction_psi")), 2),
                int(f(d.get("predictions")))
            )
        }
        other if c.is_empty() => other.to_string(),
        other => format!("{other} on class {c}"),
    }
}

fn acc_cell(m: &Value) -> String {
    let a = f(m.get("accuracy"));
    let b = f(m.get("majority_baseline_accuracy"));
    let mut h = format!("<span class=\"v\">{}</span>", fix(a, 3));
    if let Some(a) = a {
        h.push_str(&format!(
            "<span class=\"accbar\" title=\"accuracy {}, majority baseline {}\"><i style=\"width:{:.1}%\"></i>",
            fix(Some(a), 3),
            fix(b, 3),
            a.clamp(0.0, 1.0) * 100.0
        ));
        if let Some(b) = b {
            h.push_str(&format!(
                "<b style=\"left:{:.1}%\"></b>",
                b.clamp(0.0, 1.0) * 100.0
            ));
        }
        h.push_str("</span>");
    }
    h
}

fn summary_html(models: &Map<String, Value>, names: &[&str]) -> String {
    if names.is_empty() {
        return EMPTY.to_string();
    }
    let mut h = String::from(
        "<table class=\"sum\"><thead><tr><th>Model</th><th>Health</th><th class=\"num\">Samples</th>\
         <th class=\"num\">Samples/s</th><th class=\"num\">Accuracy</th><th class=\"num\">Majority baseline</th>\
         <th class=\"num\">Macro F1</th><th>Firing alerts</th></tr></thead><tbody>",
    );
    for name in names {
        let m = &models[*name];
        let hl = health(m);
        let n = esc(name);
        let unhealthy = if hl == "alert" {
            " class=\"unhealthy\""
        } else {
            ""
        };
        h.push_str(&format!(
            "<tr data-model=\"{n}\" data-health=\"{hl}\"{unhealthy}><td class=\"name\" title=\"{n}\">{n}</td><td>{}</td>\
             <td class=\"num\" data-col=\"samples\">{}</td>\
             <td class=\"num\" data-col=\"samples_per_second\">{}</td>\
             <td class=\"num\" data-col=\"accuracy\">{}</td>\
             <td class=\"num\" data-col=\"majority_baseline_accuracy\">{}</td>\
             <td class=\"num\" data-col=\"macro_f1\">{}</td><td class=\"alerts\">",
            health_badge(hl),
            int(f(m.get("samples"))),
            rate(f(m.get("samples_per_second"))),
            acc_cell(m),
            fix(f(m.get("majority_baseline_accuracy")), 3),
            fix(f(m.get("macro").and_then(|x| x.get("f1"))), 3),
        ));
        for a in alerts(m) {
            h.push_str(&format!(
                "<span class=\"badge b-a\" title=\"{}\">{}</span>",
                esc(&alert_text(a, m)),
                esc(&alert_label(a))
            ));
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table>");
    h
}

fn meta_html(window: &str, report: &Value, models: &Map<String, Value>, names: &[&str]) -> String {
    let bad = names
        .iter()
        .filter(|n| health(&models[**n]) == "alert")
        .count();
    let mut h = format!(
        "<b>{}</b> model{}",
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    );
    if bad > 0 {
        h.push_str(&format!(" \u{b7} <b class=\"bad\">{bad} alerting</b>"));
    }
    h.push_str(&format!(" \u{b7} window <b>{}</b>", esc(window)));
    if let Some(ev) = report.get("events").filter(|e| e.is_object()) {
        let empty = Map::new();
        let rj = ev
            .get("rejected")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let total: f64 = rj.values().filter_map(|v| f(Some(v))).sum();
        let parts: Vec<String> = rj
            .iter()
            .map(|(r, n)| format!("{} {}", esc(r), int(f(Some(n)))))
            .collect();
        h.push_str(&format!(
            " \u{b7} events: {} read, {} accepted, {} rejected",
            int(f(ev.get("read"))),
            int(f(ev.get("accepted"))),
            int(Some(total))
        ));
        if !parts.is_empty() {
            h.push_str(&format!(" ({})", parts.join(", ")));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(samples: u64, acc: f64, alerts: Value) -> Value {
        json!({
            "samples": samples, "accuracy": acc, "balanced_accuracy": 0.5,
            "majority_baseline_accuracy": 0.55, "log_loss": null, "samples_per_second": 3.333,
            "imbalance_ratio": 1.2222,
            "micro": {"precision": acc, "recall": acc, "f1": acc},
            "macro": {"precision": 0.4, "recall": 0.5, "f1": 0.41234},
            "weighted": {"precision": 0.5, "recall": 0.56, "f1": 0.45},
            "classes": {
                "0": {"precision": 0.5567, "recall": 0.9818, "f1": 0.71, "support": 550, "predicted": 970,
                      "tp": 540, "fp": 430, "fn": 10, "tn": 20, "label_share": 0.55, "prediction_share": 0.97},
                "1": {"precision": 0.6667, "recall": 0.0444, "f1": 0.083, "support": 450, "predicted": 30,
                      "tp": 20, "fp": 10, "fn": 430, "tn": 540, "label_share": 0.45, "prediction_share": 0.03}
            },
            "confusion": {"0": {"0": 540, "1": 10}, "1": {"0": 430, "1": 20}},
            "alerts": alerts,
            "join": {"unmatched_predictions": 0, "unmatched_labels": 0}
        })
    }

    fn api(models: Value) -> Value {
        json!({"windows": {
            "1m": {"window": null, "events": {"read": 1, "accepted": 1, "rejected": {}}, "models": {}},
            "5m": {"window": {"length_seconds": 300, "bucket_seconds": 10, "end": 1700000000},
                   "events": {"read": 1010, "accepted": 1000, "rejected": {"invalid_json": 10}},
                   "models": models},
            "all": {"window": null, "events": {"read": 1010, "accepted": 1000, "rejected": {}}, "models": {}}
        }})
    }

    fn collapsed_alerts() -> Value {
        json!([{"alert": "prediction_collapse", "class": "0"},
               {"alert": "recall_collapse", "class": "1"},
               {"alert": "near_chance", "class": ""}])
    }

    /// The `<tbody>` of the server-rendered summary table.
    fn tbody(page: &str) -> &str {
        let s = page.find("<tbody>").expect("summary table");
        &page[s..s + page[s..].find("</tbody>").unwrap()]
    }

    #[test]
    fn escapes_model_class_and_window_names() {
        let evil = "<script>alert(1)</script>";
        let mut m = model(
            1000,
            0.56,
            json!([{"alert": "prediction_collapse", "class": "\"><img src=x>"}]),
        );
        m["classes"]["\"><img src=x>"] = json!({"prediction_share": 0.97, "label_share": 0.5});
        let page = render_index(
            &api(json!({ evil: m })),
            "1.0<b>",
            "5m\"><script>x()</script>",
            "/m\"><script>y()</script>",
        );
        assert!(!page.contains(evil), "raw model name leaked");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<img src=x>"), "raw class name leaked");
        assert!(page.contains("&quot;&gt;&lt;img src=x&gt;"));
        assert!(!page.contains("1.0<b>") && page.contains("v1.0&lt;b&gt;"));
        assert!(!page.contains("<script>x()") && !page.contains("<script>y()"));
        // exactly one script element: the inlined page.js
        assert_eq!(page.matches("<script").count(), 1);
    }

    #[test]
    fn no_js_table_lists_every_model_and_marks_alerts() {
        let page = render_index(
            &api(json!({
                "b-healthy": model(2000, 0.91, json!([])),
                "a-collapsed": model(1000, 0.56, collapsed_alerts()),
                "c-healthy": model(10, 0.9, json!([])),
                "zz-broken": model(1000, 0.56, json!([{"alert": "label_imbalance", "class": ""}])),
            })),
            "0.1.0",
            "5m",
            "/metrics",
        );
        let body = tbody(&page);
        for name in ["a-collapsed", "b-healthy", "c-healthy", "zz-broken"] {
            assert!(
                body.contains(&format!("data-model=\"{name}\"")),
                "{name} missing"
            );
        }
        assert!(body
            .contains("<tr data-model=\"a-collapsed\" data-health=\"alert\" class=\"unhealthy\">"));
        assert!(body.contains("<tr data-model=\"b-healthy\" data-health=\"ok\">"));
        // unhealthy first, then by name
        let pos = |n: &str| body.find(&format!("data-model=\"{n}\"")).unwrap();
        assert!(pos("a-collapsed") < pos("zz-broken"));
        assert!(pos("zz-broken") < pos("b-healthy"));
        assert!(pos("b-healthy") < pos("c-healthy"));
        // numbers at the displayed precision
        assert!(body.contains("data-col=\"samples\">2,000<"));
        assert!(body.contains("<span class=\"v\">0.560</span>"));
        assert!(body.contains("data-col=\"macro_f1\">0.412<"));
        assert!(body.contains("data-col=\"samples_per_second\">3.33<"));
        // alerts in words, as badge titles
        assert!(body.contains("predicts class 0 for 97% of samples while 55% are class 0"));
        assert!(body.contains("recall of class 1 is 0.04 over 450 true samples"));
        assert!(body.contains("accuracy 0.560 is within 0.01 of the majority baseline 0.550"));
        assert!(
            body.contains("label imbalance ratio 1.2 (class 0: 550 true samples, class 1: 450)")
        );
        // the chosen window is selected and the meta line counts events
        assert!(page.contains("<option value=\"5m\" selected>5m</option>"));
        assert!(page.contains("<b>4</b> models \u{b7} <b class=\"bad\">2 alerting</b>"));
        assert!(page.contains("1,010 read, 1,000 accepted, 10 rejected (invalid_json 10)"));
    }

    #[test]
    fn metrics_links_follow_the_telemetry_path() {
        let page = render_index(&api(json!({})), "x", "5m", "/internal/prom");
        assert_eq!(
            page.matches("href=\"internal/prom\"").count(),
            2,
            "header and no-JS note"
        );
        assert!(!page.contains("href=\"metrics\""));
        assert!(!page.contains("<!--@"), "a placeholder was left unfilled");
    }

    #[test]
    fn empty_api_says_no_models_yet() {
        for a in [
            json!({}),
            json!({"windows": {}}),
            api(json!({})),
            Value::Null,
        ] {
            let page = render_index(&a, "0.1.0", "5m", "/metrics");
            let s = page.find("<div id=\"summary\">").unwrap();
            let summary = &page[s..s + page[s..].find("</div>").unwrap()];
            assert!(summary.contains("No models yet"), "{a}");
            assert!(!summary.contains("<table"));
        }
    }

    #[test]
    fn falls_back_to_5m_then_shortest_window() {
        let a = api(json!({"m": model(1, 1.0, json!([]))}));
        assert_eq!(pick_window(&window_names(&a), "1h"), Some("5m"));
        assert_eq!(pick_window(&window_names(&a), "all"), Some("all"));
        assert_eq!(window_names(&a), ["1m", "5m", "all"]);
        let b = json!({"windows": {"all": {}, "1h": {}, "30s": {}}});
        assert_eq!(pick_window(&window_names(&b), "5m"), Some("30s"));
        assert!(render_index(&a, "x", "1h", "/metrics").contains("data-default-window=\"5m\""));
    }

    #[test]
    fn null_numbers_render_as_dash() {
        let mut m = model(0, 0.0, json!([]));
        m["accuracy"] = Value::Null;
        m["macro"] = Value::Null;
        let page = render_index(&api(json!({"m": m})), "x", "5m", "/metrics");
        let body = tbody(&page);
        assert!(body.contains("<span class=\"v\">\u{2013}</span>"));
        assert!(body.contains("data-col=\"macro_f1\">\u{2013}<"));
        assert!(body.contains("data-health=\"idle\""));
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(int(Some(1234567.0)), "1,234,567");
        assert_eq!(int(Some(999.0)), "999");
        assert_eq!(int(Some(-1234.0)), "-1,234");
        assert_eq!(pct(Some(0.97)), "97%");
        assert_eq!(pct(Some(0.9996)), "99.9%");
        assert_eq!(pct(Some(0.003)), "0.3%");
        assert_eq!(pct(Some(0.0)), "0%");
        assert_eq!(rate(Some(123.4)), "123");
        assert_eq!(rate(Some(12.34)), "12.3");
        assert_eq!(fix(None, 3), "\u{2013}");
    }

    #[test]
    fn assets_are_inline_safe_and_small() {
        assert!(!JS.contains("</script") && !JS.contains("<!--"));
        assert!(!CSS.contains("</style"));
        for a in [TEMPLATE, CSS, JS] {
            assert!(!a.contains("http://") && !a.contains("https://") && !a.contains("//cdn"));
        }
        assert!(TEMPLATE.len() + CSS.len() + JS.len() < 40 * 1024);
        for m in [
            "css", "js", "version", "window", "options", "meta", "summary",
        ] {
            assert!(TEMPLATE.contains(&format!("<!--@{m}-->")), "{m}");
        }
    }

    /// Writes the page rendered from the browser-test fixture, for `tests/browser/serve_fixture.py`:
    /// `PREDMON_PAGE_OUT=/tmp/page.html cargo test page::tests::write_fixture_page -- --ignored`
    #[test]
    #[ignore]
    fn write_fixture_page() {
        let fixture = std::env::var("PREDMON_FIXTURE").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/browser/fixture_api.json"
            )
            .to_string()
        });
        let out =
            std::env::var("PREDMON_PAGE_OUT").unwrap_or_else(|_| "target/page_fixture.html".into());
        let api: Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
        std::fs::write(&out, render_index(&api, "0.1.0-fixture", "5m", "/metrics")).unwrap();
        eprintln!("wrote {out} from {fixture}");
    }
}
