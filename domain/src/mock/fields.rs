//! Comparing normalised requests: exact equality, noise-aware equality, and field diffs.
//!
//! Fields are compared by name and occurrence (the second `arg` with the second `arg`), so a
//! request missing a field and one with an extra field both show up as diffs.

use std::collections::BTreeMap;

use regex::Regex;

use super::model::FieldDiff;
use crate::noise::NoiseMap;

/// The prefix of noise keys that address request fields.
pub const FIELD_NOISE_PREFIX: &str = "field.";

#[derive(Debug, Clone)]
enum Rule {
    IgnoreAll,
    Matching(Vec<Regex>),
}

impl Rule {
    fn forgives(&self, actual: Option<&str>) -> bool {
        match self {
            Rule::IgnoreAll => true,
            // A regex judges the received value; a missing value is not forgiven by one.
            Rule::Matching(res) => actual.is_some_and(|text| res.iter().any(|r| r.is_match(text))),
        }
    }
}

/// Noise rules on request fields (`field.<name>` keys of a [`NoiseMap`]), compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldRules {
    rules: Vec<(String, Rule)>,
}

impl FieldRules {
    /// Compiles the `field.` rules of `noise`; other keys are not about requests and are
    /// skipped. A rule with a bad regex is dropped (it forgives nothing) and reported in
    /// `errors`, so a typo never widens matching.
    pub fn compile(noise: &NoiseMap, errors: &mut Vec<String>) -> Self {
        let mut rules = Vec::new();
        for (key, patterns) in noise {
            let Some(name) = key.strip_prefix(FIELD_NOISE_PREFIX) else {
                continue;
            };
            if patterns.is_empty() || patterns.iter().any(|p| p == "*") {
                rules.push((name.to_owned(), Rule::IgnoreAll));
                continue;
            }
            let compiled: Result<Vec<Regex>, _> = patterns.iter().map(|p| Regex::new(p)).collect();
            match compiled {
                Ok(res) => rules.push((name.to_owned(), Rule::Matching(res))),
                Err(e) => errors.push(format!("noise rule {key}: {e}")),
            }
        }
        FieldRules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn forgives(&self, field: &str, actual: Option<&str>) -> bool {
        self.rules
            .iter()
            .any(|(name, rule)| name == field && rule.forgives(actual))
    }
}

type Keyed<'a> = BTreeMap<(&'a str, usize), &'a str>;

/// `(name, occurrence)` -> value, plus the keys in the order they appear.
fn keyed(fields: &[(String, String)]) -> (Keyed<'_>, Vec<(&str, usize)>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut map = Keyed::new();
    let mut order = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let n = seen.entry(name.as_str()).or_insert(0);
        map.insert((name.as_str(), *n), value.as_str());
        order.push((name.as_str(), *n));
        *n += 1;
    }
    (map, order)
}

/// How a recorded request compares with a received one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// Fields present on both sides with equal values.
    pub equal: usize,
    /// Every other field: recorded order first, then fields only the received request has.
    pub diffs: Vec<FieldDiff>,
}

pub(crate) fn compare(expected: &[(String, String)], actual: &[(String, String)]) -> Comparison {
    let (exp, exp_order) = keyed(expected);
    let (act, act_order) = keyed(actual);
    let mut out = Comparison::default();
    for key in &exp_order {
        let (e, a) = (exp.get(key).copied(), act.get(key).copied());
        if e == a {
            out.equal += 1;
        } else {
            out.diffs.push(FieldDiff {
                field: key.0.to_owned(),
                expected: e.map(str::to_owned),
                actual: a.map(str::to_owned),
            });
        }
    }
    for key in act_order.iter().filter(|k| !exp.contains_key(*k)) {
        out.diffs.push(FieldDiff {
            field: key.0.to_owned(),
            expected: None,
            actual: act.get(key).map(|v| (*v).to_owned()),
        });
    }
    out
}

/// Whether every difference is forgiven by one of the rule sets.
pub(crate) fn noise_equal(
    expected: &[(String, String)],
    actual: &[(String, String)],
    rules: &[&FieldRules],
) -> bool {
    if rules.iter().all(|r| r.is_empty()) {
        return expected == actual;
    }
    compare(expected, actual).diffs.iter().all(|d| {
        rules
            .iter()
            .any(|r| r.forgives(&d.field, d.actual.as_deref()))
    })
}

const SUMMARY_LIMIT: usize = 200;

/// A one-line description of a request from its fields, for miss reports.
pub fn fields_summary(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
        if out.len() > SUMMARY_LIMIT {
            break;
        }
    }
    truncate(out, SUMMARY_LIMIT)
}

/// At most `limit` bytes (on a character boundary), with `…` when cut.
pub(crate) fn truncate(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
    text
}
