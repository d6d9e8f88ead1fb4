//! Structural JSON diff with noise.
//!
//! Every node is first checked against the noise rules (a forgiven node hides its subtree). Objects
//! are compared key by key, arrays by position or, with `ignore_ordering`, as multisets. Numbers
//! compare by value (`1` equals `1.0`). Reported paths carry the expected-side index for paired
//! array elements and the actual-side index for elements only in the actual array.

use serde_json::{Map, Number, Value};

use super::{DiffKind, FieldDiff};
use crate::noise::{CompiledNoise, PathSeg, render_body_path};

pub(crate) fn diff_json(
    exp: &Value,
    act: &Value,
    noise: &CompiledNoise,
    ignore_ordering: bool,
) -> Vec<FieldDiff> {
    let mut walker = Walker {
        noise,
        ignore_ordering,
        path: Vec::new(),
    };
    let mut sink = Sink::collect();
    walker.node(Some(exp), Some(act), &mut sink);
    sink.diffs
}

/// Where differences go: collected, or (when probing whether two elements match) only noted.
struct Sink {
    diffs: Vec<FieldDiff>,
    probe: bool,
    found: bool,
}

impl Sink {
    fn collect() -> Self {
        Sink {
            diffs: Vec::new(),
            probe: false,
            found: false,
        }
    }

    fn probe() -> Self {
        Sink {
            diffs: Vec::new(),
            probe: true,
            found: false,
        }
    }

    fn push(&mut self, make: impl FnOnce() -> FieldDiff) {
        if self.probe {
            self.found = true;
        } else {
            self.diffs.push(make());
        }
    }

    /// A probe can stop at the first difference.
    fn done(&self) -> bool {
        self.probe && self.found
    }
}

struct Walker<'a> {
    noise: &'a CompiledNoise,
    ignore_ordering: bool,
    path: Vec<PathSeg>,
}

impl Walker<'_> {
    fn node(&mut self, exp: Option<&Value>, act: Option<&Value>, sink: &mut Sink) {
        if sink.done() || self.noise.body_forgives(&self.path, act) {
            return;
        }
        // Values are cloned only when a difference is actually collected.
        let path = &self.path;
        let diff =
            |kind| move || FieldDiff::new(render_body_path(path), kind, exp.cloned(), act.cloned());
        match (exp, act) {
            (None, None) => {}
            (Some(_), None) => sink.push(diff(DiffKind::Removed)),
            (None, Some(_)) => sink.push(diff(DiffKind::Added)),
            (Some(Value::Object(e)), Some(Value::Object(a))) => self.objects(e, a, sink),
            (Some(Value::Array(e)), Some(Value::Array(a))) => {
                if self.ignore_ordering {
                    self.unordered(e, a, sink);
                } else {
                    self.ordered(e, a, sink);
                }
            }
            (Some(e), Some(a)) if kind_of(e) == kind_of(a) => {
                if !scalar_eq(e, a) {
                    sink.push(diff(DiffKind::ValueChanged));
                }
            }
            (Some(_), Some(_)) => sink.push(diff(DiffKind::TypeChanged)),
        }
    }

    fn child(&mut self, seg: PathSeg, exp: Option<&Value>, act: Option<&Value>, sink: &mut Sink) {
        self.path.push(seg);
        self.node(exp, act, sink);
        self.path.pop();
    }

    /// Keys in sorted order (expected's, then actual-only ones), whatever the map's own order.
    fn objects(&mut self, e: &Map<String, Value>, a: &Map<String, Value>, sink: &mut Sink) {
        let mut e_keys: Vec<&String> = e.keys().collect();
        e_keys.sort();
        let mut a_only: Vec<&String> = a.keys().filter(|k| !e.contains_key(*k)).collect();
        a_only.sort();
        for k in e_keys {
            self.child(PathSeg::Key(k.clone()), e.get(k), a.get(k), sink);
        }
        for k in a_only {
            self.child(PathSeg::Key(k.clone()), None, a.get(k), sink);
        }
    }

    fn ordered(&mut self, e: &[Value], a: &[Value], sink: &mut Sink) {
        for i in 0..e.len().max(a.len()) {
            self.child(PathSeg::Index(i), e.get(i), a.get(i), sink);
        }
    }

    /// Multiset comparison: pair exactly equal elements, then elements equal under noise; the
    /// rest are paired in order and diffed field by field, leftovers are removed/added.
    fn unordered(&mut self, e: &[Value], a: &[Value], sink: &mut Sink) {
        let mut pair: Vec<Option<usize>> = vec![None; e.len()];
        let mut used = vec![false; a.len()];
        for (i, ev) in e.iter().enumerate() {
            if let Some(j) = (0..a.len()).find(|&j| !used[j] && a[j] == *ev) {
                pair[i] = Some(j);
                used[j] = true;
            }
        }
        for i in 0..e.len() {
            if pair[i].is_some() {
                continue;
            }
            for j in 0..a.len() {
                if !used[j] && self.matches(i, &e[i], &a[j]) {
                    pair[i] = Some(j);
                    used[j] = true;
                    break;
                }
            }
        }
        let mut rest_a = (0..a.len()).filter(|&j| !used[j]);
        for i in (0..e.len()).filter(|&i| pair[i].is_none()) {
            let other = rest_a.next();
            self.child(PathSeg::Index(i), Some(&e[i]), other.map(|j| &a[j]), sink);
        }
        for j in rest_a {
            self.child(PathSeg::Index(j), None, Some(&a[j]), sink);
        }
    }

    /// Whether expected element `i` equals `act` under noise.
    fn matches(&mut self, i: usize, exp: &Value, act: &Value) -> bool {
        let mut probe = Sink::probe();
        self.child(PathSeg::Index(i), Some(exp), Some(act), &mut probe);
        !probe.found
    }
}

fn kind_of(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Equality of two scalars of the same kind.
fn scalar_eq(e: &Value, a: &Value) -> bool {
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => numbers_eq(x, y),
        _ => e == a,
    }
}

fn numbers_eq(x: &Number, y: &Number) -> bool {
    if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
        return p == q;
    }
    if let (Some(p), Some(q)) = (x.as_u64(), y.as_u64()) {
        return p == q;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(p), Some(q)) => p == q,
        _ => false,
    }
}
