//! JUnit XML for CI systems: one `<testsuite>` per test set, one `<testcase>` per test.

use serde_json::Value;

use super::{TestResult, TestSetReport, TestStatus, parse_duration_secs};
use crate::compare::{DiffKind, FieldDiff};

/// Longest rendering of one expected/actual value in failure details.
const MAX_VALUE_CHARS: usize = 200;

/// `<testsuites name=run_id tests failures errors skipped time>` with a `<testsuite>` per report.
/// Failed tests carry `<failure message="risk HIGH: <diff paths>" type="HIGH">` with one line
/// per difference; ignored, obsolete and unfinished tests are `<skipped>`. A set that ended
/// abnormally counts as one error and carries its `failure_reason` in `<system-err>`.
pub fn junit_xml(run_id: &str, reports: &[TestSetReport]) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors, mut skipped, mut time) =
        (0usize, 0usize, 0usize, 0usize, 0.0);
    for r in reports {
        let s_failures = r
            .tests
            .iter()
            .filter(|t| t.status == TestStatus::Failed)
            .count();
        let s_skipped = r.tests.iter().filter(|t| is_skipped(t.status)).count();
        let s_errors = usize::from(r.status.is_error());
        // fold, not sum: an empty f64 sum is -0.0, which would print as "-0.000".
        let s_time = parse_duration_secs(&r.time_taken)
            .unwrap_or_else(|| r.tests.iter().map(test_time).fold(0.0, |a, b| a + b));
        tests += r.tests.len();
        failures += s_failures;
        errors += s_errors;
        skipped += s_skipped;
        time += s_time;
        suites.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{s_failures}\" errors=\"{s_errors}\" skipped=\"{s_skipped}\" time=\"{s_time:.3}\">\n",
            attr(&r.test_set),
            r.tests.len(),
        ));
        for t in &r.tests {
            suites.push_str(&testcase(&r.test_set, t));
        }
        if !r.failure_reason.is_empty() {
            suites.push_str(&format!(
                "    <system-err>{}</system-err>\n",
                text(&r.failure_reason)
            ));
        }
        suites.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">\n{suites}</testsuites>\n",
        attr(run_id)
    )
}

fn is_skipped(s: TestStatus) -> bool {
    matches!(
        s,
        TestStatus::Ignored | TestStatus::Obsolete | TestStatus::Pending | TestStatus::Running
    )
}

fn test_time(t: &TestResult) -> f64 {
    parse_duration_secs(&t.time_taken).unwrap_or_else(|| (t.completed - t.started).max(0) as f64)
}

fn testcase(set: &str, t: &TestResult) -> String {
    let open = format!(
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
        attr(&t.test_case_id),
        attr(set),
        test_time(t)
    );
    match t.status {
        TestStatus::Passed => format!("{open}/>\n"),
        TestStatus::Failed => {
            let info = &t.failure_info;
            let paths: Vec<&str> = info
                .assessment
                .diffs
                .iter()
                .map(|d| d.path.as_str())
                .collect();
            let summary = if paths.is_empty() {
                info.assessment.reasons.join("; ")
            } else {
                paths.join(", ")
            };
            let mut details: Vec<String> = info.assessment.diffs.iter().map(diff_line).collect();
            details.extend(info.assessment.reasons.iter().cloned());
            format!(
                "{open}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                attr(&format!("risk {}: {summary}", info.risk)),
                info.risk,
                text(&details.join("\n"))
            )
        }
        status => {
            let why = match status {
                TestStatus::Ignored => "ignored",
                TestStatus::Obsolete => "obsolete",
                TestStatus::Running => "running",
                _ => "pending",
            };
            format!("{open}>\n      <skipped message=\"{why}\"/>\n    </testcase>\n")
        }
    }
}

fn diff_line(d: &FieldDiff) -> String {
    let kind = match d.kind {
        DiffKind::Added => "added",
        DiffKind::Removed => "removed",
        DiffKind::TypeChanged => "type_changed",
        DiffKind::ValueChanged => "value_changed",
    };
    format!(
        "{kind} {}: expected {}, actual {}",
        d.path,
        show(d.expected.as_ref()),
        show(d.actual.as_ref())
    )
}

fn show(v: Option<&Value>) -> String {
    let full = match v {
        None => "(absent)".to_string(),
        Some(v) => v.to_string(),
    };
    if full.chars().count() <= MAX_VALUE_CHARS {
        return full;
    }
    let cut: String = full.chars().take(MAX_VALUE_CHARS).collect();
    format!("{cut}…")
}

/// XML 1.0 cannot carry most control characters at all, even escaped: they become U+FFFD.
fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute values normalise raw whitespace to spaces; character references survive.
            '\n' if in_attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if in_attr => out.push_str("&#9;"),
            c if xml_char_ok(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

fn attr(s: &str) -> String {
    escape(s, true)
}

fn text(s: &str) -> String {
    escape(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            attr("a&b<c>\"d'\n\te\r"),
            "a&amp;b&lt;c&gt;&quot;d&apos;&#10;&#9;e&#13;"
        );
        assert_eq!(
            text("x]]>y\n\t\u{0}\u{1b}\u{FFFE}ok"),
            "x]]&gt;y\n\t\u{FFFD}\u{FFFD}\u{FFFD}ok"
        );
        assert_eq!(text("héllo 😀"), "héllo 😀");
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::String("x".repeat(500));
        let shown = show(Some(&long));
        assert_eq!(shown.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(show(None), "(absent)");
    }
}
