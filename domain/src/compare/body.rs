//! Body comparison: whole-body noise, JSON structural diff, byte comparison otherwise.

use base64::Engine;
use serde_json::Value;

use super::{BodyResult, BodyType, CompareOptions, DiffKind, FieldDiff, json_diff};
use crate::http::{HttpResponse, header_value};
use crate::noise::CompiledNoise;

pub(crate) struct BodyOutcome {
    pub result: BodyResult,
    pub diffs: Vec<FieldDiff>,
    /// Framing headers may differ: they follow the body, whose own differences (if any) are
    /// already reported. Only a truncated capture keeps them, as the one record of the size.
    pub framing_ok: bool,
}

pub(crate) fn compare_bodies(
    exp: &HttpResponse,
    act: &HttpResponse,
    noise: &CompiledNoise,
    opts: &CompareOptions,
) -> BodyOutcome {
    // A truncated capture is a prefix: parsing it as JSON would be meaningless.
    let truncated = exp.body_truncated || act.body_truncated;
    let exp_json = if truncated {
        None
    } else {
        parse_json(&exp.body)
    };
    let act_json = if truncated {
        None
    } else {
        parse_json(&act.body)
    };
    let expects_json = exp_json
        .as_ref()
        .is_some_and(|v| v.is_object() || v.is_array() || content_type_is_json(exp));
    let both_utf8 =
        std::str::from_utf8(&exp.body).is_ok() && std::str::from_utf8(&act.body).is_ok();
    let body_type = if (exp_json.is_some() && act_json.is_some()) || expects_json {
        BodyType::Json
    } else if both_utf8 {
        BodyType::Plain
    } else {
        BodyType::Binary
    };
    let mut result = BodyResult {
        normal: true,
        body_type,
        expected: render(&exp.body, body_type),
        actual: render(&act.body, body_type),
    };
    if noise.whole_body_forgives(Some(&String::from_utf8_lossy(&act.body))) {
        return BodyOutcome {
            result,
            diffs: Vec::new(),
            framing_ok: true,
        };
    }
    let changed = |kind, expected: Value, actual: &str| {
        vec![FieldDiff::new(
            "body".to_string(),
            kind,
            Some(expected),
            Some(Value::String(actual.to_string())),
        )]
    };
    let diffs = match (exp_json, act_json) {
        _ if truncated => {
            if prefix_consistent(exp, act) {
                Vec::new()
            } else {
                changed(
                    DiffKind::ValueChanged,
                    Value::String(result.expected.clone()),
                    &result.actual,
                )
            }
        }
        (Some(e), Some(a)) => json_diff::diff_json(&e, &a, noise, opts.ignore_ordering),
        // The recording was JSON and the replay is not: the schema is gone.
        (Some(e), None) if expects_json => changed(DiffKind::TypeChanged, e, &result.actual),
        _ if !opts.compare_non_json || exp.body == act.body => Vec::new(),
        _ => changed(
            DiffKind::ValueChanged,
            Value::String(result.expected.clone()),
            &result.actual,
        ),
    };
    result.normal = diffs.is_empty();
    let framing_ok = !truncated;
    BodyOutcome {
        result,
        diffs,
        framing_ok,
    }
}

fn parse_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

fn content_type_is_json(resp: &HttpResponse) -> bool {
    header_value(&resp.headers, "content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}

/// Binary bodies are shown as standard base64, everything else as (lossy) UTF-8 text.
fn render(body: &[u8], body_type: BodyType) -> String {
    match body_type {
        BodyType::Binary => base64::engine::general_purpose::STANDARD.encode(body),
        BodyType::Json | BodyType::Plain => String::from_utf8_lossy(body).into_owned(),
    }
}

/// With a truncated side, the bodies agree when the truncated one is a prefix of the other.
fn prefix_consistent(exp: &HttpResponse, act: &HttpResponse) -> bool {
    match (exp.body_truncated, act.body_truncated) {
        (true, false) => act.body.starts_with(&exp.body),
        (false, true) => exp.body.starts_with(&act.body),
        _ => {
            let n = exp.body.len().min(act.body.len());
            exp.body[..n] == act.body[..n]
        }
    }
}
