//! Noise rules: which differences between a recorded and a replayed response do not count.
//!
//! A rule is a path plus a list of regexes ([`NoiseMap`]). Paths:
//! - `header.<Name>`: a response header, exact name, case-insensitive (not a substring match: a
//!   `header.date` rule does not touch `X-Validate-Token`);
//! - `body`: the whole body;
//! - `body.<dot.path>`: a JSON field. Array indexes are optional: `items.id` covers the `id` of every
//!   element (at any array depth), `items.0.id` only the first element's. A rule covers the subtree
//!   below its path (a regex rule judges each scalar in it). JSON keys are case-sensitive; keys
//!   containing `.` cannot be addressed.
//!
//! An empty regex list ignores the field. A non-empty list ignores a difference only when the
//! *actual* scalar value (as text; strings without quotes) contains a match of one of the regexes
//! (regex find, like Keploy). The pattern `*` means "ignore" (Keploy's `{"*": "*"}` idiom).
//! Keys with any other prefix are ignored.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub mod datetime;
mod detect;

pub use detect::detect_timestamp_noise;

/// Noise rules: path -> regexes (see the module docs).
pub type NoiseMap = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    #[error("invalid noise regex {pattern:?} for {path}: {message}")]
    Regex {
        path: String,
        pattern: String,
        message: String,
    },
}

/// One section of `globalNoise`: body field paths and header names, each with its regexes.
/// Values may also be a single string or null in the input (`{"*": "*"}`, `Date:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoiseSection {
    #[serde(default, deserialize_with = "lenient_rules")]
    pub body: BTreeMap<String, Vec<String>>,
    #[serde(default, deserialize_with = "lenient_rules")]
    pub header: BTreeMap<String, Vec<String>>,
}

/// SPEC/Keploy `globalNoise`:
/// `{"global": {"body": {...}, "header": {...}}, "test-sets": {"test-set-0": {...}}}`.
/// Other keys (Keploy's `url`) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalNoise {
    #[serde(default)]
    pub global: NoiseSection,
    #[serde(default, rename = "test-sets")]
    pub test_sets: BTreeMap<String, NoiseSection>,
}

impl GlobalNoise {
    /// The global rules plus those of `test_set`, as `body.x` / `header.X` keys. A body key of
    /// `""` or `"*"` means the whole body (`body`).
    pub fn for_test_set(&self, test_set: &str) -> NoiseMap {
        let mut out = self.global.to_noise_map();
        if let Some(section) = self.test_sets.get(test_set) {
            merge(&mut out, &section.to_noise_map());
        }
        out
    }
}

impl NoiseSection {
    pub fn to_noise_map(&self) -> NoiseMap {
        let mut out = NoiseMap::new();
        for (key, regexes) in &self.body {
            let path = match key.as_str() {
                "" | "*" => "body".to_string(),
                _ => format!("body.{key}"),
            };
            merge(&mut out, &NoiseMap::from([(path, regexes.clone())]));
        }
        for (name, regexes) in &self.header {
            merge(
                &mut out,
                &NoiseMap::from([(format!("header.{name}"), regexes.clone())]),
            );
        }
        out
    }
}

/// Union of two rule sets. For a path in both, an empty list (ignore everything) wins; otherwise
/// the regex lists are concatenated without duplicates.
pub fn merge(into: &mut NoiseMap, other: &NoiseMap) {
    for (path, regexes) in other {
        match into.get_mut(path) {
            None => {
                into.insert(path.clone(), regexes.clone());
            }
            Some(existing) if existing.is_empty() => {}
            Some(existing) if regexes.is_empty() => existing.clear(),
            Some(existing) => {
                for r in regexes {
                    if !existing.contains(r) {
                        existing.push(r.clone());
                    }
                }
            }
        }
    }
}

fn lenient_rules<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let raw: Option<BTreeMap<String, Option<OneOrMany>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let list = match v {
                None => Vec::new(),
                Some(OneOrMany::One(s)) => vec![s],
                Some(OneOrMany::Many(l)) => l,
            };
            (k, list)
        })
        .collect())
}

/// One segment of a JSON path as the comparison walks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Renders `body` + segments as a dot path (`body.items.2.id`).
pub fn render_body_path(path: &[PathSeg]) -> String {
    let mut out = String::from("body");
    for seg in path {
        out.push('.');
        match seg {
            PathSeg::Key(k) => out.push_str(k),
            PathSeg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// A rule with its regexes compiled.
#[derive(Debug, Clone)]
enum Rule {
    IgnoreAll,
    Matching(Vec<Regex>),
}

impl Rule {
    fn forgives(&self, actual: Option<&str>) -> bool {
        match self {
            Rule::IgnoreAll => true,
            Rule::Matching(res) => actual.is_some_and(|text| res.iter().any(|r| r.is_match(text))),
        }
    }
}

/// A [`NoiseMap`] compiled once (regexes checked and built) for many comparisons.
#[derive(Debug, Clone, Default)]
pub struct CompiledNoise {
    whole_body: Vec<Rule>,
    body: Vec<(Vec<String>, Rule)>,
    /// Lowercase header name and its rule.
    headers: Vec<(String, Rule)>,
}

impl CompiledNoise {
    pub fn compile(noise: &NoiseMap) -> Result<Self, NoiseError> {
        let mut out = CompiledNoise::default();
        for (path, patterns) in noise {
            let rule = compile_rule(path, patterns)?;
            let lower = path.to_ascii_lowercase();
            if lower == "body" {
                out.whole_body.push(rule);
            } else if lower.starts_with("body.") {
                // Keys keep their case: only the prefix is case-insensitive.
                let segs = path["body.".len()..]
                    .split('.')
                    .map(str::to_string)
                    .collect();
                out.body.push((segs, rule));
            } else if let Some(name) = lower.strip_prefix("header.") {
                out.headers.push((name.to_string(), rule));
            }
        }
        Ok(out)
    }

    /// Whether a difference in header `name` is noise, given the actual (joined) value.
    pub fn header_forgives(&self, name: &str, actual: Option<&str>) -> bool {
        self.headers
            .iter()
            .any(|(n, rule)| n.eq_ignore_ascii_case(name) && rule.forgives(actual))
    }

    /// Whether a whole-body difference is noise, given the actual body as text.
    pub fn whole_body_forgives(&self, actual: Option<&str>) -> bool {
        self.whole_body.iter().any(|rule| rule.forgives(actual))
    }

    /// Whether a difference at the JSON node `path` (and its subtree) is noise, given the actual
    /// value there. Regex rules only judge scalars; containers are descended into instead.
    pub fn body_forgives(&self, path: &[PathSeg], actual: Option<&Value>) -> bool {
        if self.body.is_empty() {
            return false;
        }
        let text = actual.and_then(scalar_text);
        self.body
            .iter()
            .any(|(segs, rule)| path_matches(segs, path) && rule.forgives(text.as_deref()))
    }

    pub fn is_empty(&self) -> bool {
        self.whole_body.is_empty() && self.body.is_empty() && self.headers.is_empty()
    }
}

fn compile_rule(path: &str, patterns: &[String]) -> Result<Rule, NoiseError> {
    if patterns.is_empty() || patterns.iter().any(|p| p == "*") {
        return Ok(Rule::IgnoreAll);
    }
    let res = patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| NoiseError::Regex {
                path: path.to_string(),
                pattern: p.clone(),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule::Matching(res))
}

/// Scalar as text, strings without quotes; `None` for containers.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// A rule path matches a node at or below it: the rule's segments equal the node's keys in order,
/// where index segments of the node may be skipped (index-free rules) or matched by a numeric
/// rule segment.
fn path_matches(rule: &[String], path: &[PathSeg]) -> bool {
    match (rule.split_first(), path.split_first()) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((r, rest)), Some((PathSeg::Key(k), tail))) => r == k && path_matches(rest, tail),
        (Some((r, rest)), Some((PathSeg::Index(i), tail))) => {
            (r.parse::<usize>().ok() == Some(*i) && path_matches(rest, tail))
                || path_matches(rule, tail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> PathSeg {
        PathSeg::Key(k.to_string())
    }

    fn compiled(pairs: &[(&str, &[&str])]) -> CompiledNoise {
        let map: NoiseMap = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        CompiledNoise::compile(&map).unwrap()
    }

    #[test]
    fn global_noise_parses_minimal_json() {
        let g: GlobalNoise = serde_json::from_str(r#"{"global":{"body":{"uuid":[]}}}"#).unwrap();
        assert_eq!(
            g.global.body,
            BTreeMap::from([("uuid".to_string(), vec![])])
        );
        assert!(g.global.header.is_empty());
        assert!(g.test_sets.is_empty());
        assert_eq!(
            g.for_test_set("test-set-0"),
            NoiseMap::from([("body.uuid".to_string(), vec![])])
        );
    }

    #[test]
    fn global_noise_for_test_set_merges_global_and_set() {
        let g: GlobalNoise = serde_json::from_str(
            r#"{"global":{"body":{"url":["https?://\\S+"],"ts":["^1"]},"header":{"Date":[]},"url":{"regex":[]}},
                "test-sets":{"test-set-1":{"body":{"uuid":[],"ts":[],"url":["^ftp"]},"header":{"User-Agent":"PostmanRuntime/7.34.0"}},
                             "test-set-2":{"body":{"*":"*"}}}}"#,
        )
        .unwrap();
        let set1 = g.for_test_set("test-set-1");
        let expected: NoiseMap = [
            ("body.url", vec!["https?://\\S+", "^ftp"]),
            ("body.ts", vec![]),
            ("body.uuid", vec![]),
            ("header.Date", vec![]),
            ("header.User-Agent", vec!["PostmanRuntime/7.34.0"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(set1, expected);
        // Unknown sets get only the global rules.
        assert_eq!(g.for_test_set("nope").len(), 3);
        // "*" body key is the whole body; the "*" pattern compiles to ignore-all.
        let set2 = g.for_test_set("test-set-2");
        assert_eq!(set2.get("body"), Some(&vec!["*".to_string()]));
        assert!(
            CompiledNoise::compile(&set2)
                .unwrap()
                .whole_body_forgives(None)
        );
    }

    #[test]
    fn global_noise_yaml_null_values_mean_ignore() {
        let g: GlobalNoise = serde_yaml::from_str("global:\n  header:\n    Date:\n").unwrap();
        assert_eq!(
            g.for_test_set("x"),
            NoiseMap::from([("header.Date".to_string(), vec![])])
        );
    }

    #[test]
    fn merge_empty_list_wins_and_regexes_union() {
        let mut a = NoiseMap::from([
            ("body.a".to_string(), vec!["x".to_string()]),
            ("body.b".to_string(), vec![]),
            ("body.c".to_string(), vec!["1".to_string()]),
        ]);
        let b = NoiseMap::from([
            ("body.a".to_string(), vec![]),
            ("body.b".to_string(), vec!["y".to_string()]),
            ("body.c".to_string(), vec!["1".to_string(), "2".to_string()]),
            ("body.d".to_string(), vec!["z".to_string()]),
        ]);
        merge(&mut a, &b);
        assert_eq!(a["body.a"], Vec::<String>::new());
        assert_eq!(a["body.b"], Vec::<String>::new());
        assert_eq!(a["body.c"], vec!["1".to_string(), "2".to_string()]);
        assert_eq!(a["body.d"], vec!["z".to_string()]);
    }

    #[test]
    fn invalid_regex_is_an_error() {
        let map = NoiseMap::from([(
            "body.id".to_string(),
            vec!["ok".to_string(), "(unclosed".to_string()],
        )]);
        let err = CompiledNoise::compile(&map).unwrap_err();
        let NoiseError::Regex {
            path,
            pattern,
            message,
        } = &err;
        assert_eq!(path, "body.id");
        assert_eq!(pattern, "(unclosed");
        assert!(!message.is_empty());
        assert!(
            err.to_string()
                .starts_with("invalid noise regex \"(unclosed\" for body.id: ")
        );
    }

    #[test]
    fn header_rules_are_exact_case_insensitive() {
        let n = compiled(&[("header.date", &[]), ("header.X-Token", &["^tok-\\d+$"])]);
        assert!(n.header_forgives("Date", Some("whatever")));
        assert!(n.header_forgives("DATE", None));
        assert!(!n.header_forgives("X-Validate-Date", Some("x")));
        assert!(n.header_forgives("x-token", Some("tok-42")));
        assert!(!n.header_forgives("x-token", Some("tok-x")));
        assert!(!n.header_forgives("x-token", None));
    }

    #[test]
    fn body_paths_with_and_without_indexes() {
        let n = compiled(&[("body.items.id", &[]), ("body.rows.0.ts", &[])]);
        let p = |segs: Vec<PathSeg>| n.body_forgives(&segs, Some(&json!(1)));
        assert!(p(vec![key("items"), PathSeg::Index(0), key("id")]));
        assert!(p(vec![key("items"), PathSeg::Index(7), key("id")]));
        // Nested arrays: every index may be skipped.
        assert!(p(vec![
            key("items"),
            PathSeg::Index(1),
            PathSeg::Index(2),
            key("id")
        ]));
        assert!(!p(vec![key("items"), PathSeg::Index(0), key("name")]));
        assert!(!p(vec![key("items")]));
        // A rule covers the subtree below it.
        assert!(p(vec![
            key("items"),
            PathSeg::Index(0),
            key("id"),
            key("hi")
        ]));
        assert!(p(vec![key("rows"), PathSeg::Index(0), key("ts")]));
        assert!(!p(vec![key("rows"), PathSeg::Index(1), key("ts")]));
        // A numeric object key matches a numeric rule segment too.
        assert!(p(vec![key("rows"), key("0"), key("ts")]));
    }

    #[test]
    fn regex_rules_judge_actual_scalar_text() {
        let n = compiled(&[
            ("body.ts", &["^\\d{4}-"]),
            ("body.n", &["^4\\d$"]),
            ("body.obj", &["."]),
        ]);
        let ts = [key("ts")];
        assert!(n.body_forgives(&ts, Some(&json!("2024-01-01"))));
        assert!(!n.body_forgives(&ts, Some(&json!("yesterday"))));
        assert!(!n.body_forgives(&ts, None));
        assert!(n.body_forgives(&[key("n")], Some(&json!(42))));
        assert!(!n.body_forgives(&[key("n")], Some(&json!(420))));
        // Containers are not judged by regexes; the scalars below them are.
        assert!(!n.body_forgives(&[key("obj")], Some(&json!({"a": 1}))));
        assert!(n.body_forgives(&[key("obj"), key("a")], Some(&json!(1))));
        assert!(n.body_forgives(
            &[key("obj"), key("a"), PathSeg::Index(3), key("b")],
            Some(&json!(true))
        ));
        assert!(!n.body_forgives(&[key("obj"), key("a")], Some(&json!(""))));
    }

    #[test]
    fn unknown_prefixes_are_ignored_and_whole_body_is_separate() {
        let n = compiled(&[("url", &[]), ("Body", &["^ok$"])]);
        assert!(n.whole_body_forgives(Some("ok")));
        assert!(!n.whole_body_forgives(Some("not ok")));
        assert!(!n.body_forgives(&[key("url")], Some(&json!(1))));
        assert!(!n.header_forgives("url", None));
    }

    #[test]
    fn render_path() {
        assert_eq!(render_body_path(&[]), "body");
        assert_eq!(
            render_body_path(&[key("items"), PathSeg::Index(2), key("id")]),
            "body.items.2.id"
        );
    }
}
