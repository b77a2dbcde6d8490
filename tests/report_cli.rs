//! `predmon report` as a command: the text format against scikit-learn's own
//! `classification_report` (tests/fixtures/report/*/classification_report.txt, written
//! by tests/fixtures/make_fixtures.py), the alert sentences against the expected
//! numbers, standard input and several files, and the command's errors.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(name)
}

/// `predmon report ARGS...`, with `stdin` on standard input.
fn report(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_predmon"))
        .arg("report")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run predmon");
    // A report of files does not read stdin; a closed pipe is fine then.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `report --format text` of a fixture, with its config when it has one.
fn text_of(name: &str) -> String {
    let dir = fixture(name);
    let events = dir.join("events.jsonl");
    let config = dir.join("config.toml");
    let mut args = vec!["--format", "text"];
    if config.exists() {
        args.extend(["--config", config.to_str().unwrap()]);
    }
    args.push(events.to_str().unwrap());
    ok_stdout(&report(&args, b""))
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The lines of `text` from the one starting with `from` to the next one starting with
/// `until` (exclusive), trailing whitespace trimmed.
fn section<'a>(text: &'a str, from: &str, until: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(from))
        .skip(1)
        .take_while(|l| !l.starts_with(until))
        .map(str::trim_end)
        .collect()
}

#[test]
fn text_table_is_scikit_learns_classification_report() {
    let mut compared = 0;
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(sklearn) = std::fs::read_to_string(dir.join("classification_report.txt")) else {
            continue;
        };
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let ours = text_of(&name);
        let want = expected(&name);
        for block in sklearn.split("## model ").skip(1) {
            let (model, table) = block.split_once('\n').unwrap();
            let m = &want["models"][model];
            let heading = format!("model {model}: {} samples", m["samples"]);
            assert!(ours.contains(&heading), "{name}: no `{heading}` in\n{ours}");
            // predmon's table: from the heading to the blank line before `balanced accuracy`
            let mut lines = section(&ours, &heading, "balanced accuracy");
            assert_eq!(
                lines.pop(),
                Some(""),
                "{name}/{model}: table not followed by a blank line"
            );
            // ...whose accuracy row adds the majority baseline after sklearn's columns
            let baseline = format!(
                "   majority baseline {:.2}",
                m["majority_baseline_accuracy"].as_f64().unwrap()
            );
            let acc = lines
                .iter_mut()
                .find(|l| l.trim_start().starts_with("accuracy "))
                .unwrap_or_else(|| panic!("{name}/{model}: no accuracy row"));
            *acc = acc
                .strip_suffix(&baseline)
                .unwrap_or_else(|| panic!("{name}/{model}: `{acc}` lacks `{baseline}`"));
            let theirs: Vec<&str> = table.trim_end().lines().map(str::trim_end).collect();
            assert_eq!(lines, theirs, "{name}/{model}: predmon vs scikit-learn");
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} models compared");
}

#[test]
fn text_alerts_are_sentences_with_the_reports_numbers() {
    let name = "imbalanced_collapse";
    let ours = text_of(name);
    let m = &expected(name)["models"]["payments"];
    let class = |c: &str, k: &str| m["classes"][c][k].as_f64().unwrap();
    let sentences = section(&ours, "alerts:", "\u{0}");
    let want = [
        format!(
            "  - recall collapse: recall of class bad is {:.2} over {} true samples (floor 0.10)",
            class("bad", "recall"),
            m["classes"]["bad"]["support"]
        ),
        format!(
            "  - prediction collapse: model predicts class ok for {:.0}% of samples while {:.0}% are class ok",
            class("ok", "prediction_share") * 100.0,
            class("ok", "label_share") * 100.0
        ),
        format!(
            "  - label imbalance: the most frequent true class is {:.1} times the rarest (threshold 10.0)",
            m["imbalance_ratio"].as_f64().unwrap()
        ),
        format!(
            "  - near chance: accuracy {:.3} is within 0.02 of the majority baseline {:.3}",
            m["accuracy"].as_f64().unwrap(),
            m["majority_baseline_accuracy"].as_f64().unwrap()
        ),
    ];
    assert_eq!(
        sentences.len(),
        m["alerts"].as_array().unwrap().len(),
        "one sentence per alert: {sentences:#?}"
    );
    for w in &want {
        assert!(
            sentences.iter().any(|s| s.starts_with(w.as_str())),
            "no `{w}` in {sentences:#?}"
        );
    }
    // a model without alerts says so
    assert!(text_of("binary").contains("\nalerts: none\n"));
}

#[test]
fn standard_input_and_several_files_read_as_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let events = std::fs::read(fixture("split_out_of_order").join("events.jsonl")).unwrap();
    let whole = ok_stdout(&report(&["--format", "json", "-"], &events));
    let want = expected("split_out_of_order");
    let got: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(got["events"], want["events"]);
    assert_eq!(
        got["models"].as_object().unwrap().len(),
        want["models"].as_object().unwrap().len()
    );

    // split at a line boundary in the middle: halves of a split event land in both parts
    let cut = events[..events.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::write(&a, &events[..cut]).unwrap();
    std::fs::write(&b, &events[cut..]).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(ok_stdout(&report(&["--format", "json", a, b], b"")), whole);
    assert_eq!(
        ok_stdout(&report(&["--format", "json", a, "-"], &events[cut..])),
        whole
    );
}

fn failure(args: &[&str]) -> String {
    let out = report(args, b"");
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed a report");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn errors_name_what_was_wrong_once() {
    let err = failure(&["/nonexistent/events.jsonl"]);
    assert_eq!(
        err.trim_end(),
        "predmon: cannot read /nonexistent/events.jsonl: No such file or directory (os error 2)"
    );
    let events = fixture("binary").join("events.jsonl");
    let events = events.to_str().unwrap();
    let err = failure(&["--window", "soon", events]);
    assert!(
        err.starts_with("predmon: --window: `soon` is not a duration")
            && err.matches("--window").count() == 1,
        "{err}"
    );
    let err = failure(&["--window", "15s", events]);
    assert_eq!(
        err.trim_end(),
        "predmon: --window: `15s` is not a positive multiple of metrics.bucket (10s)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[limits]\nmax_classes = 2.5\n").unwrap();
    let err = failure(&["--config", config.to_str().unwrap(), events]);
    assert!(
        err.contains("floating point `2.5`, expected a whole number for key `limits.max_classes`"),
        "{err}"
    );
}
