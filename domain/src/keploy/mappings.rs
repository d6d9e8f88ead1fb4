//! `mappings.yaml`: which mocks each test of a set consumed.

use serde_yaml::Value;

use super::yamlio::{Ctx, dump, load_one, mapping};
use super::{KeployError, VERSION};

/// The `kind` of a mappings document.
pub const MAPPING_KIND: &str = "TestMocksMapping";

/// One mock a test uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MockEntry {
    pub name: String,
    /// Empty when the file did not say (the legacy `mocks: "mock-0,mock-1"` form).
    pub kind: String,
    /// Unix seconds.
    pub timestamp: Option<i64>,
    /// `reqTimestampMock`, RFC 3339 text kept as written.
    pub req_timestamp_mock: Option<String>,
    /// `resTimestampMock`, RFC 3339 text kept as written.
    pub res_timestamp_mock: Option<String>,
}

impl MockEntry {
    /// An entry carrying only a name and kind.
    pub fn named(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            timestamp: None,
            req_timestamp_mock: None,
            res_timestamp_mock: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mappings {
    pub test_set_id: String,
    /// (test id, its mocks), in file order.
    pub tests: Vec<(String, Vec<MockEntry>)>,
}

const DOC: &str = "mappings document";

/// Encodes the current shape: `tests: [{id, mock_entries: [{name, kind, ...}]}]`, with
/// `mock_entries` left out for a test without mocks (as Keploy does).
pub fn encode_mappings(m: &Mappings) -> Result<String, KeployError> {
    let tests = m
        .tests
        .iter()
        .map(|(id, entries)| {
            let mut fields = vec![("id", Value::from(id.as_str()))];
            if !entries.is_empty() {
                fields.push((
                    "mock_entries",
                    Value::Sequence(entries.iter().map(encode_entry).collect()),
                ));
            }
            mapping(fields)
        })
        .collect();
    let doc = mapping([
        ("version", Value::from(VERSION)),
        ("kind", Value::from(MAPPING_KIND)),
        ("test_set_id", Value::from(m.test_set_id.as_str())),
        ("tests", Value::Sequence(tests)),
    ]);
    dump(&doc, DOC)
}

fn encode_entry(e: &MockEntry) -> Value {
    let mut fields = vec![
        ("name", Value::from(e.name.as_str())),
        ("kind", Value::from(e.kind.as_str())),
    ];
    if let Some(ts) = e.timestamp {
        fields.push(("timestamp", Value::from(ts)));
    }
    if let Some(ts) = &e.req_timestamp_mock {
        fields.push(("reqTimestampMock", Value::from(ts.as_str())));
    }
    if let Some(ts) = &e.res_timestamp_mock {
        fields.push(("resTimestampMock", Value::from(ts.as_str())));
    }
    mapping(fields)
}

fn decode_entry(ctx: &Ctx, v: &Value, path: &str) -> Result<MockEntry, KeployError> {
    match v {
        // `mocks: [mock-0, mock-1]` (a list of names) appears in some older files.
        Value::String(name) => Ok(MockEntry::named(name.trim(), "")),
        Value::Mapping(_) => Ok(MockEntry {
            name: ctx.text(v, "name", &format!("{path}.name"))?,
            kind: ctx
                .opt_text(v, "kind", &format!("{path}.kind"))?
                .unwrap_or_default(),
            timestamp: ctx.opt_int(v, "timestamp", &format!("{path}.timestamp"))?,
            req_timestamp_mock: ctx.opt_text(
                v,
                "reqTimestampMock",
                &format!("{path}.reqTimestampMock"),
            )?,
            res_timestamp_mock: ctx.opt_text(
                v,
                "resTimestampMock",
                &format!("{path}.resTimestampMock"),
            )?,
        }),
        _ => Err(ctx.invalid(path, "must be a mock name or {name, kind}")),
    }
}

fn decode_entries(ctx: &Ctx, test: &Value, path: &str) -> Result<Vec<MockEntry>, KeployError> {
    // The current shape wins when a file has both.
    let (key, list) = match (ctx.get(test, "mock_entries"), ctx.get(test, "mocks")) {
        (Some(list), _) => ("mock_entries", list),
        (None, Some(list)) => ("mocks", list),
        (None, None) => return Ok(Vec::new()),
    };
    match list {
        // The legacy form: `mocks: "mock-0,mock-1"`.
        Value::String(names) => Ok(names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| MockEntry::named(n, ""))
            .collect()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| decode_entry(ctx, item, &format!("{path}.{key}[{i}]")))
            .collect(),
        _ => Err(ctx.invalid(
            &format!("{path}.{key}"),
            "must be a list or a comma-separated string",
        )),
    }
}

/// Decodes any of the three shapes Keploy has written (`mock_entries`, `mocks` as a
/// comma-separated string, `mocks` as a list of `{name, kind}`).
pub fn decode_mappings(yaml: &str) -> Result<Mappings, KeployError> {
    let root = load_one(yaml, DOC)?;
    let ctx = Ctx { doc: DOC };
    if !root.is_mapping() {
        return Err(KeployError::Yaml {
            doc: DOC.to_owned(),
            error: "expected a mapping with test_set_id and tests".to_owned(),
        });
    }
    if let Some(kind) = ctx.opt_text(&root, "kind", "kind")?
        && kind != MAPPING_KIND
    {
        return Err(KeployError::WrongKind {
            doc: DOC.to_owned(),
            expected: MAPPING_KIND.to_owned(),
            found: kind,
        });
    }
    // The oldest files carried `id: <set>-mapping` instead of `test_set_id`.
    let test_set_id = match ctx.opt_text(&root, "test_set_id", "test_set_id")? {
        Some(id) => id,
        None => ctx
            .opt_text(&root, "id", "id")?
            .map(|id| id.trim_end_matches("-mapping").to_owned())
            .unwrap_or_default(),
    };
    let tests = match ctx.get(&root, "tests") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, test)| {
                let path = format!("tests[{i}]");
                if !test.is_mapping() {
                    return Err(ctx.invalid(&path, "must be a mapping {id, mock_entries}"));
                }
                let id = ctx.text(test, "id", &format!("{path}.id"))?;
                Ok((id, decode_entries(&ctx, test, &path)?))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ctx.invalid("tests", "must be a list")),
    };
    Ok(Mappings { test_set_id, tests })
}
