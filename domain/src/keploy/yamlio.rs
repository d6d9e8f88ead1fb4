//! YAML reading and writing shared by the document codecs: `!!binary` preservation, and
//! field access that turns absent or ill-typed fields into [`KeployError`]s.
//!
//! serde_yaml resolves the core `!!binary` tag away (the scalar reads as its base64 text)
//! and cannot emit it (a tag always comes out as a local `!tag`). Both directions are
//! patched here, without touching any text that is not a tag.

use serde_yaml::{
    Mapping, Value,
    value::{Tag, TaggedValue},
};

use super::KeployError;

/// The tag of a YAML core binary scalar, as it appears in decoded [`Value`]s.
pub const BINARY_TAG: &str = "!!binary";

/// Whether `tag` is YAML's core binary tag (or the local `!binary` some writers use).
pub(crate) fn is_binary_tag(tag: &Tag) -> bool {
    matches!(
        tag.to_string().as_str(),
        BINARY_TAG | "!binary" | "!tag:yaml.org,2002:binary"
    )
}

pub(crate) fn binary_value(base64_text: String) -> Value {
    Value::Tagged(Box::new(TaggedValue {
        tag: Tag::new(BINARY_TAG),
        value: Value::String(base64_text),
    }))
}

fn parse_stream(text: &str) -> Result<Vec<Value>, (usize, serde_yaml::Error)> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(i, doc)| Value::deserialize(doc).map_err(|e| (i, e)))
        .collect()
}

/// Every document of a YAML stream (empty ones as `Null`), with `!!binary` scalars kept as
/// [`BINARY_TAG`]-tagged values. On error: the index of the failing document and why.
pub(crate) fn load_stream(text: &str) -> Result<Vec<Value>, (usize, serde_yaml::Error)> {
    let plain = parse_stream(text)?;
    if !text.contains("!!binary") && !text.contains("!<tag:yaml.org,2002:binary>") {
        return Ok(plain);
    }
    // Second parse with the core tag spelled as a local tag, which serde_yaml keeps. The
    // textual swap may also hit string contents; the first parse stays authoritative and
    // only lends the tag where it holds a string and the second parse a tagged scalar.
    let swapped = text
        .replace("!<tag:yaml.org,2002:binary>", "!binary")
        .replace("!!binary", "!binary");
    match parse_stream(&swapped) {
        Ok(tagged) if tagged.len() == plain.len() => Ok(plain
            .into_iter()
            .zip(tagged)
            .map(|(p, t)| adopt_binary_tags(p, t))
            .collect()),
        _ => Ok(plain),
    }
}

fn adopt_binary_tags(plain: Value, tagged: Value) -> Value {
    match (plain, tagged) {
        (Value::String(s), Value::Tagged(t)) if is_binary_tag(&t.tag) => binary_value(s),
        (Value::Sequence(p), Value::Sequence(t)) if p.len() == t.len() => Value::Sequence(
            p.into_iter()
                .zip(t)
                .map(|(p, t)| adopt_binary_tags(p, t))
                .collect(),
        ),
        (Value::Mapping(p), Value::Mapping(t)) if p.len() == t.len() => Value::Mapping(
            p.into_iter()
                .zip(t)
                .map(|((k, p), (_, t))| (k, adopt_binary_tags(p, t)))
                .collect(),
        ),
        (Value::Tagged(p), Value::Tagged(t)) if p.tag == t.tag => {
            let TaggedValue { tag, value } = *p;
            Value::Tagged(Box::new(TaggedValue {
                tag,
                value: adopt_binary_tags(value, t.value),
            }))
        }
        (plain, _) => plain,
    }
}

/// Exactly one document (blank documents around it are ignored).
pub(crate) fn load_one(text: &str, doc: &str) -> Result<Value, KeployError> {
    let docs = load_stream(text).map_err(|(_, e)| KeployError::Yaml {
        doc: doc.to_owned(),
        error: e.to_string(),
    })?;
    let mut docs = docs.into_iter().filter(|v| !v.is_null());
    match (docs.next(), docs.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(KeployError::Yaml {
            doc: doc.to_owned(),
            error: "the document is empty".to_owned(),
        }),
        (Some(_), Some(_)) => Err(KeployError::Yaml {
            doc: doc.to_owned(),
            error: "expected one document, found several (separated by ---)".to_owned(),
        }),
    }
}

/// Visits every string the emitter could write: keys, scalars and tags.
fn any_text(value: &Value, hit: &mut dyn FnMut(&str) -> bool) -> bool {
    match value {
        Value::String(s) => hit(s),
        Value::Sequence(items) => items.iter().any(|v| any_text(v, hit)),
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| any_text(k, hit) || any_text(v, hit)),
        Value::Tagged(t) => hit(&t.tag.to_string()) || any_text(&t.value, hit),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn retag_binary(value: &Value, placeholder: &Tag) -> Value {
    match value {
        Value::Tagged(t) if t.tag == BINARY_TAG => Value::Tagged(Box::new(TaggedValue {
            tag: placeholder.clone(),
            value: retag_binary(&t.value, placeholder),
        })),
        Value::Tagged(t) => Value::Tagged(Box::new(TaggedValue {
            tag: t.tag.clone(),
            value: retag_binary(&t.value, placeholder),
        })),
        Value::Sequence(items) => {
            Value::Sequence(items.iter().map(|v| retag_binary(v, placeholder)).collect())
        }
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .map(|(k, v)| (k.clone(), retag_binary(v, placeholder)))
                .collect::<Mapping>(),
        ),
        other => other.clone(),
    }
}

/// One YAML document, with [`BINARY_TAG`]-tagged values written as `!!binary`.
pub(crate) fn dump(value: &Value, doc: &str) -> Result<String, KeployError> {
    let fail = |e: serde_yaml::Error| KeployError::Encode {
        doc: doc.to_owned(),
        reason: e.to_string(),
    };
    if !contains_binary(value) {
        return serde_yaml::to_string(value).map_err(fail);
    }
    // Emit a local placeholder tag no text in the document contains, then rename it: the
    // placeholder can then only occur in the output where the emitter wrote it as a tag.
    let mut n = 0u32;
    let placeholder = loop {
        let candidate = if n == 0 {
            "kreplay-binary".to_owned()
        } else {
            format!("kreplay-binary-{n}")
        };
        if !any_text(value, &mut |s| s.contains(&candidate)) {
            break candidate;
        }
        n += 1;
    };
    let text =
        serde_yaml::to_string(&retag_binary(value, &Tag::new(&placeholder))).map_err(fail)?;
    Ok(text.replace(&format!("!{placeholder}"), BINARY_TAG))
}

fn contains_binary(value: &Value) -> bool {
    match value {
        Value::Tagged(t) => t.tag == BINARY_TAG || contains_binary(&t.value),
        Value::Sequence(items) => items.iter().any(contains_binary),
        Value::Mapping(map) => map.values().any(contains_binary),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => false,
    }
}

/// A scalar as text, the way a hand-written document most likely meant it.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}

/// Field access within one named document; paths in errors are dotted (`spec.req.url`).
pub(crate) struct Ctx<'a> {
    pub doc: &'a str,
}

impl Ctx<'_> {
    pub fn missing(&self, path: &str) -> KeployError {
        KeployError::MissingField {
            doc: self.doc.to_owned(),
            field: path.to_owned(),
        }
    }

    pub fn invalid(&self, path: &str, reason: impl Into<String>) -> KeployError {
        KeployError::InvalidField {
            doc: self.doc.to_owned(),
            field: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// `map[key]`, treating an explicit `null` like an absent key.
    pub fn get<'v>(&self, map: &'v Value, key: &str) -> Option<&'v Value> {
        map.get(key).filter(|v| !v.is_null())
    }

    pub fn mapping<'v>(
        &self,
        map: &'v Value,
        key: &str,
        path: &str,
    ) -> Result<&'v Value, KeployError> {
        match self.get(map, key) {
            None => Err(self.missing(path)),
            Some(v) if v.is_mapping() => Ok(v),
            Some(_) => Err(self.invalid(path, "must be a mapping")),
        }
    }

    /// A scalar as text, or `None` when absent.
    pub fn opt_text(
        &self,
        map: &Value,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, KeployError> {
        match self.get(map, key) {
            None => Ok(None),
            Some(v) => scalar_text(v)
                .map(Some)
                .ok_or_else(|| self.invalid(path, "must be a string")),
        }
    }

    pub fn text(&self, map: &Value, key: &str, path: &str) -> Result<String, KeployError> {
        self.opt_text(map, key, path)?
            .ok_or_else(|| self.missing(path))
    }

    /// An integer (a numeric string is accepted too), or `None` when absent.
    pub fn opt_int<T: TryFrom<i128>>(
        &self,
        map: &Value,
        key: &str,
        path: &str,
    ) -> Result<Option<T>, KeployError> {
        let Some(v) = self.get(map, key) else {
            return Ok(None);
        };
        let wide: Option<i128> = match v {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let wide = wide.ok_or_else(|| self.invalid(path, "must be an integer"))?;
        T::try_from(wide)
            .map(Some)
            .map_err(|_| self.invalid(path, format!("{wide} is out of range")))
    }

    pub fn opt_bool(
        &self,
        map: &Value,
        key: &str,
        path: &str,
    ) -> Result<Option<bool>, KeployError> {
        match self.get(map, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(self.invalid(path, "must be true or false")),
        }
    }
}

/// Builds a mapping keeping insertion order (the order Keploy writes fields in).
pub(crate) fn mapping<K: Into<Value>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Mapping(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}
