//! `mocks.yaml`: every egress mock of a test set, one YAML document each, `---` between.

use serde_yaml::Value;

use super::yamlio::{Ctx, dump, load_stream, mapping, scalar_text};
use super::{KeployError, VERSION};

/// One mock document. The spec is kept verbatim (kinds kreplay does not model survive an
/// import/export unchanged); `!!binary` scalars in it are tagged [`super::BINARY_TAG`].
#[derive(Debug, Clone, PartialEq)]
pub struct MockDoc {
    /// `mock-<N>` in current files; older files use `mocks` or `config`.
    pub name: String,
    /// `Http`, `Generic`, `Postgres`, `MySQL`, `Mongo`, `DNS`, ...
    pub kind: String,
    pub spec: Value,
    /// `{req: [paths], value: [regexes]}`; a legacy bare list decodes as `{value: [...]}`.
    pub noise: Option<Value>,
    /// `connectionId`.
    pub connection_id: Option<String>,
}

/// Encodes mocks as a multi-document stream (`---` between documents; empty for none).
pub fn encode_mocks(mocks: &[MockDoc]) -> Result<String, KeployError> {
    let mut out = String::new();
    for (i, mock) in mocks.iter().enumerate() {
        let doc = format!("mock #{i} `{}`", mock.name);
        if mock.name.trim().is_empty() || mock.kind.trim().is_empty() || mock.spec.is_null() {
            return Err(KeployError::Encode {
                doc,
                reason: "a mock needs a name, a kind and a spec".to_owned(),
            });
        }
        let mut fields = vec![
            ("version", Value::from(VERSION)),
            ("kind", Value::from(mock.kind.as_str())),
            ("name", Value::from(mock.name.as_str())),
            ("spec", mock.spec.clone()),
        ];
        if let Some(noise) = &mock.noise {
            fields.push(("noise", noise.clone()));
        }
        if let Some(id) = &mock.connection_id {
            fields.push(("connectionId", Value::from(id.as_str())));
        }
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&dump(&mapping(fields), &doc)?);
    }
    Ok(out)
}

/// Decodes a `mocks.yaml` stream; blank documents are skipped.
pub fn decode_mocks(yaml: &str) -> Result<Vec<MockDoc>, KeployError> {
    let docs = load_stream(yaml).map_err(|(i, e)| KeployError::Yaml {
        doc: format!("mocks document #{i}"),
        error: e.to_string(),
    })?;
    let mut mocks = Vec::with_capacity(docs.len());
    for (i, root) in docs.into_iter().enumerate() {
        if root.is_null() {
            continue;
        }
        let name = root
            .get("name")
            .and_then(scalar_text)
            .filter(|n| !n.trim().is_empty());
        let label = match &name {
            Some(name) => format!("mocks document #{i} `{name}`"),
            None => format!("mocks document #{i}"),
        };
        let ctx = Ctx { doc: &label };
        if !root.is_mapping() {
            return Err(KeployError::Yaml {
                doc: label.clone(),
                error: "expected a mapping with version, kind, name and spec".to_owned(),
            });
        }
        let kind = ctx.text(&root, "kind", "kind")?;
        if kind.trim().is_empty() {
            return Err(ctx.missing("kind"));
        }
        let name = name.ok_or_else(|| ctx.missing("name"))?;
        let spec = ctx
            .get(&root, "spec")
            .cloned()
            .ok_or_else(|| ctx.missing("spec"))?;
        let noise = match ctx.get(&root, "noise") {
            None => None,
            // The legacy form: a bare list of value regexes.
            Some(list @ Value::Sequence(_)) => Some(mapping([("value", list.clone())])),
            Some(map @ Value::Mapping(_)) => Some(map.clone()),
            Some(_) => return Err(ctx.invalid("noise", "must be a mapping {req, value} or a list")),
        };
        let connection_id = ctx.opt_text(&root, "connectionId", "connectionId")?;
        mocks.push(MockDoc {
            name,
            kind,
            spec,
            noise,
            connection_id,
        });
    }
    Ok(mocks)
}
