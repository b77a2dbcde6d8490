#!/usr/bin/env python3
"""Writes predmon's corpus of nasty input lines, and the outcome each must have.

    python3 scripts/nasty_corpus.py                  # the committed corpus: tests/nasty/
    python3 scripts/nasty_corpus.py --huge DIR       # the huge cases (100 MB line, 1M names)

Every case is a file: three valid lines (model "ok"), the nasty line(s), three more
valid lines, so a test sees that the lines around the nasty ones are still counted.
`expected.json` beside the files gives, per file, the counts `predmon report --format
json` must print: lines read, accepted, rejected by reason, and for some cases the
samples or unmatched halves of model "nasty". tests/nasty.rs checks the committed
corpus on every `cargo test`; scripts/reliability.sh checks the huge cases (release
build) and measures memory. The table is explained in docs/RELIABILITY.md.
"""

import json
import os
import sys

OK = [
    b'{"model":"ok","prediction":"a","label":"a","timestamp":1700000000}',
    b'{"model":"ok","id":"CASE-1","prediction":"b","timestamp":1700000001}',
    b'{"model":"ok","id":"CASE-1","label":"b","timestamp":1700000002}',
]
# Accepted events (the split pair is two), samples of model "ok" per file.
OK_EVENTS = 2 * len(OK)
OK_SAMPLES = 2 * 2

N = 10_000  # nesting depth


def case(name, nasty, outcome, note, **extra):
    """outcome: a rejection reason, or "accepted"."""
    return dict(name=name, nasty=nasty, outcome=outcome, note=note, **extra)


def small_cases():
    deep_arr = b"[" * N + b"]" * N
    deep_obj = b'{"y":' * N + b"1" + b"}" * N
    nasty = b'"model":"nasty"'
    return [
        # Deep nesting: serde_json skips what predmon does not read without recursion.
        case("deep_array_top", [deep_arr], "not_an_object",
             "10,000 nested arrays as the whole line"),
        case("deep_object_ignored", [b"{" + nasty + b',"prediction":"a","label":"a","x":' + deep_obj + b"}"],
             "accepted", "10,000 nested objects in a field predmon does not read",
             nasty_samples=1),
        case("deep_in_prediction", [b"{" + nasty + b',"prediction":' + deep_arr + b',"label":"a"}'],
             "bad_class", "10,000 nested arrays as the prediction"),
        case("deep_in_scores", [b"{" + nasty + b',"prediction":"a","label":"a","scores":' + deep_obj + b"}"],
             "bad_scores", "10,000 nested objects as the scores"),
        case("deep_unclosed", [b'{"prediction":"a","label":"a","x":' + b"[" * N],
             "invalid_json", "10,000 arrays opened, never closed"),
        case("deep_unbalanced", [b"{" * N + b"}" * N],
             "invalid_json", "10,000 braces without keys"),
        # NUL bytes.
        case("nul_in_string", [b"{" + nasty + b',"prediction":"a\x00","label":"a"}'],
             "invalid_json", "a raw NUL inside a string (control characters must be escaped)"),
        case("nul_between_tokens", [b"{" + nasty + b',\x00"prediction":"a","label":"a"}'],
             "invalid_json", "a raw NUL between tokens"),
        case("nul_line", [b"\x00" * 64, b"\x00"], "invalid_json",
             "lines of NUL bytes only (NUL is not whitespace, so the line is not blank)"),
        case("nul_escaped", [b"{" + nasty + b',"prediction":"a\\u0000","label":"a\\u0000"}'],
             "accepted", "an escaped NUL is a valid character of a class name",
             nasty_confusion={"a\u0000": {"a\u0000": 1}}),
        # Invalid UTF-8: invalid_utf8 wins over invalid_json.
        case("invalid_utf8", [
            b"{" + nasty + b',"prediction":"\xff","label":"a"}',
            b"{" + nasty + b',"prediction":"\xc0\xaf","label":"a"}',  # overlong '/'
            b"{" + nasty + b',"prediction":"\xed\xa0\x80","label":"a"}',  # UTF-16 surrogate
            b"{" + nasty + b',"prediction":"\xe2\x82","label":"a"}',  # truncated sequence
            b"{" + nasty + b',"prediction":"a","label":"a"}\x80',  # lone continuation byte
            b"\xfe\xff\x00{\x00}",  # UTF-16 with a byte order mark
            b"{" + nasty + b',"prediction":"a","label":"a","x":"\xf4\x90\x80\x80"}',  # > U+10FFFF
        ], "invalid_utf8", "bytes that are not UTF-8, inside and outside strings"),
        case("lone_surrogate_escape", [b"{" + nasty + b',"prediction":"\\ud800","label":"a"}'],
             "bad_class", "an escaped lone UTF-16 surrogate as a class (not a Unicode string)"),
        case("utf8_bom", [b"\xef\xbb\xbf{" + nasty + b',"prediction":"a","label":"a"}'],
             "invalid_json", "a UTF-8 byte order mark before the object"),
        # Duplicate keys: the last one wins, as in serde_json and most JSON readers.
        case("duplicate_keys", [
            b"{" + nasty + b',"prediction":"a","prediction":"b","label":"b"}',
            b'{"model":"other","model":"nasty","label":"a","prediction":"b","label":"c"}',
            b"{" + nasty + b',"prediction":"c","label":"c","scores":{"c":0.1,"c":0.9}}',
        ], "accepted", "repeated keys: the last value counts",
             nasty_confusion={"b": {"b": 1}, "c": {"b": 1, "c": 1}}),
        # Huge numbers.
        case("huge_number_class", [
            b"{" + nasty + b',"prediction":1e400,"label":"a"}',
            b"{" + nasty + b',"prediction":-1e400,"label":"a"}',
            b"{" + nasty + b',"prediction":1.0e2,"label":"a"}',
        ], "bad_class", "numbers beyond f64 (and floats) as classes"),
        case("huge_integer_class", [
            b"{" + nasty + b',"prediction":123456789012345678901234567890,"label":"123456789012345678901234567890"}',
        ], "accepted", "an integer beyond 64 bits is a class in decimal, like any integer",
             nasty_confusion={"123456789012345678901234567890": {"123456789012345678901234567890": 1}}),
        case("huge_number_timestamp", [
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":1e400}',
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":-1e300}',
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":99999999999999999999}',
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":170141183460469231731687303715.9}',
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":' + b"9" * 5000 + b"}",
        ], "bad_timestamp", "timestamps outside the range of nanoseconds in 64 bits"),
        case("huge_number_scores", [
            b"{" + nasty + b',"prediction":"a","label":"a","scores":{"a":1e400}}',
            b"{" + nasty + b',"prediction":"a","label":"a","scores":{"a":' + b"9" * 5000 + b"}}",
        ], "bad_scores", "scores beyond f64 or outside [0, 1]"),
        case("huge_number_ignored", [
            b"{" + nasty + b',"prediction":"a","label":"a","x":1e999999,"y":' + b"7" * 20_000 + b"}",
        ], "accepted", "huge numbers in fields predmon does not read are skipped unconverted",
             nasty_samples=1),
        # NaN and Infinity are not JSON.
        case("nan_infinity_literals", [
            b"{" + nasty + b',"prediction":"a","label":"a","scores":{"a":NaN}}',
            b"{" + nasty + b',"prediction":"a","label":"a","scores":{"a":Infinity}}',
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":-Infinity}',
            b"{" + nasty + b',"prediction":NaN,"label":"a"}',
            b"{" + nasty + b',"prediction":"a","label":"a","x":NaN}',
        ], "invalid_json", "NaN, Infinity and -Infinity literals anywhere"),
        case("nan_infinity_strings", [
            b"{" + nasty + b',"prediction":"a","label":"a","scores":{"a":"NaN"}}',
            b"{" + nasty + b',"prediction":"a","label":"a","scores":["Infinity"]}',
        ], "bad_scores", "\"NaN\" and \"Infinity\" as strings where scores go"),
        case("nan_infinity_timestamp_strings", [
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":"NaN"}',
            b"{" + nasty + b',"prediction":"a","label":"a","timestamp":"Infinity"}',
        ], "bad_timestamp", "\"NaN\" and \"Infinity\" as timestamps"),
        # Names and ids.
        case("ids_never_join", [
            b'{"model":"nasty","id":"never-%d","prediction":"a","timestamp":1700000000}' % i
            for i in range(1000)
        ], "accepted", "1,000 predictions whose labels never come: held, reported unmatched",
             nasty_unmatched=[1000, 0]),
        case("long_names", [
            b'{"model":"nasty","id":"' + b"i" * 10_000 + b'","prediction":"' + b"p" * 10_000 + b'"}',
            b'{"model":"nasty","prediction":"' + b"c" * 50_000 + b'","label":"' + b"c" * 50_000 + b'"}',
        ], "accepted", "10 KB ids and 50 KB class names (under limits.max_event_bytes)",
             nasty_samples=1, nasty_unmatched=[1, 0]),
        case("many_classes", [
            b'{"model":"nasty","prediction":"c%d","label":"c%d"}' % (i, i) for i in range(250)
        ], {"accepted": 100, "class_limit": 150},
            "250 distinct classes for one model: the first 100 are counted"),
        case("many_models", [
            b'{"model":"m%d","prediction":"a","label":"a"}' % i for i in range(250)
        ], {"accepted": 99, "model_limit": 151},
            "250 distinct models: with \"ok\" they are 251; the first 100 are counted"),
        case("blank_and_crlf", [b"", b"   \t", b"\r", b"\x0c"], "blank",
             "empty, whitespace-only and CR-only lines: not events, not counted"),
        case("not_objects", [b"null", b"1", b'"str"', b"[]", b"true", b"1e400"], "not_an_object",
             "JSON values that are not objects"),
        case("truncated", [b'{"model":"nasty","prediction":"a","lab', b'{"model":', b"{"],
             "invalid_json", "lines cut short"),
    ]


def huge_cases():
    big = 100 * 1024 * 1024
    return [
        case("line_100mb", [b'{"model":"nasty","prediction":"a","label":"a","x":"' + b"x" * big + b'"}'],
             "too_large", "one 100 MB line: skipped to its end, never buffered"),
        case("classes_1m", [
            b'{"model":"nasty","prediction":"c%d","label":"c%d"}' % (i, i) for i in range(1_000_000)
        ], {"accepted": 100, "class_limit": 999_900},
            "1,000,000 distinct class names for one model"),
        case("models_1m", [
            b'{"model":"m%d","prediction":"a","label":"a"}' % i for i in range(1_000_000)
        ], {"accepted": 99, "model_limit": 999_901},
            "1,000,000 distinct model names"),
        case("ids_1m_never_join", [
            b'{"model":"nasty","id":"never-%d","prediction":"a"}' % i for i in range(1_000_000)
        ], "accepted", "1,000,000 predictions whose labels never come",
             nasty_unmatched=[1_000_000, 0]),
    ]


def expected_of(c):
    n = len(c["nasty"])
    out = c["outcome"]
    rejected = {}
    if out == "blank":
        read, accepted, nasty_lines = len(OK) * 2, OK_EVENTS, 0
    elif out == "accepted":
        read, accepted, nasty_lines = len(OK) * 2 + n, OK_EVENTS + n, n
    elif isinstance(out, dict):
        accepted = OK_EVENTS + out["accepted"]
        rejected = {k: v for k, v in out.items() if k != "accepted"}
        read, nasty_lines = len(OK) * 2 + n, n
    else:
        read, accepted, nasty_lines = len(OK) * 2 + n, OK_EVENTS, n
        rejected = {out: n}
    e = {"note": c["note"], "nasty_lines": nasty_lines,
         "events": {"read": read, "accepted": accepted, "rejected": rejected},
         "ok_samples": OK_SAMPLES}
    for k in ("nasty_samples", "nasty_confusion", "nasty_unmatched"):
        if k in c:
            e[k] = c[k]
    return e


def write(directory, cases):
    os.makedirs(directory, exist_ok=True)
    expected = {}
    for c in cases:
        path = os.path.join(directory, c["name"] + ".jsonl")
        with open(path, "wb") as f:
            # Ids unique to the file, so that files read together cannot interfere.
            name = c["name"].encode()
            for line in OK:
                f.write(line.replace(b"CASE", name + b"-before") + b"\n")
            for line in c["nasty"]:
                f.write(line + b"\n")
            for line in OK:
                f.write(line.replace(b"CASE", name + b"-after") + b"\n")
        expected[c["name"] + ".jsonl"] = expected_of(c)
    with open(os.path.join(directory, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--huge":
        write(sys.argv[2], huge_cases())
    elif len(sys.argv) == 1:
        here = os.path.dirname(os.path.abspath(__file__))
        write(os.path.join(here, "..", "tests", "nasty"), small_cases())
    else:
        sys.exit(__doc__)
