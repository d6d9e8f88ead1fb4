//! The `keploy/` directory tree as a list of (path, bytes): what a ZIP download holds.
//!
//! ```text
//! keploy/<set>/tests/<test>.yaml
//! keploy/<set>/mocks.yaml                       (always written, possibly empty)
//! keploy/<set>/mappings.yaml                    (when known)
//! keploy/reports/<test-run-N>/<set>-report.yaml
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::KeployError;
use super::mappings::{Mappings, decode_mappings, encode_mappings};
use super::mocks::{MockDoc, decode_mocks, encode_mocks};
use super::testcase::{TestCaseDoc, decode_test_case, encode_test_case};
use super::yamlio::load_stream;

/// Everything one test set has on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct TestSetFiles {
    /// The directory name, `test-set-N`.
    pub name: String,
    pub tests: Vec<TestCaseDoc>,
    pub mocks: Vec<MockDoc>,
    pub mappings: Option<Mappings>,
    /// (`test-run-N`, the report's YAML text, carried as is).
    pub reports: Vec<(String, String)>,
}

/// One file of the layout; `path` uses `/` and starts with `keploy/` on export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    pub path: String,
    pub contents: Vec<u8>,
}

const ROOT: &str = "keploy";
const REPORTS: &str = "reports";
/// Folder names Keploy skips when scanning for test sets.
const NOT_SETS: [&str; 4] = [REPORTS, "testReports", "schema", "api-tests"];

fn split_numeric_suffix(s: &str) -> (&str, &str) {
    let digits = s.bytes().rev().take_while(u8::is_ascii_digit).count();
    s.split_at(s.len() - digits)
}

/// Orders names by prefix, then numeric suffix as a number (`test-2` < `test-10`), then
/// bytewise, so the order is total and deterministic.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let ((pa, na), (pb, nb)) = (split_numeric_suffix(a), split_numeric_suffix(b));
    let (na, nb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
    pa.cmp(pb)
        .then_with(|| (a.len() == pa.len()).cmp(&(b.len() == pb.len())).reverse())
        .then_with(|| na.len().cmp(&nb.len()))
        .then_with(|| na.cmp(nb))
        .then_with(|| a.cmp(b))
}

/// Whether `name` can be one path segment that reads back as the same name.
fn check_segment(what: &str, name: &str) -> Result<(), KeployError> {
    let reason = if name.trim().is_empty() {
        "is empty"
    } else if name == "." || name == ".." || name.starts_with('.') {
        "starts with a dot"
    } else if name.contains(['/', '\\', '\0']) {
        "contains a path separator"
    } else {
        return Ok(());
    };
    Err(KeployError::Encode {
        doc: format!("{what} {name:?}"),
        reason: format!("the name {reason}"),
    })
}

fn duplicate(path: &str) -> KeployError {
    KeployError::Layout {
        path: path.to_owned(),
        reason: "two items would be written to this path".to_owned(),
    }
}

/// Writes the layout. Sets, tests and reports are ordered with [`natural_cmp`], so the
/// same input always gives the same files in the same order.
pub fn export_layout(sets: &[TestSetFiles]) -> Result<Vec<ExportedFile>, KeployError> {
    let mut sets: Vec<&TestSetFiles> = sets.iter().collect();
    sets.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let mut files = Vec::new();
    let mut reports: Vec<(&str, &str, &str)> = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        check_segment("test set", &set.name)?;
        if NOT_SETS.contains(&set.name.as_str()) {
            return Err(KeployError::Encode {
                doc: format!("test set {:?}", set.name),
                reason: "Keploy never reads a test set with this folder name".to_owned(),
            });
        }
        let dir = format!("{ROOT}/{}", set.name);
        if i > 0 && sets[i - 1].name == set.name {
            return Err(duplicate(&dir));
        }
        let mut tests: Vec<&TestCaseDoc> = set.tests.iter().collect();
        tests.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        for (j, test) in tests.iter().enumerate() {
            check_segment("test case", &test.name)?;
            let path = format!("{dir}/tests/{}.yaml", test.name);
            if j > 0 && tests[j - 1].name == test.name {
                return Err(duplicate(&path));
            }
            let yaml = encode_test_case(test).map_err(|e| e.in_file(&path))?;
            files.push(ExportedFile {
                path,
                contents: yaml.into_bytes(),
            });
        }
        let path = format!("{dir}/mocks.yaml");
        let yaml = encode_mocks(&set.mocks).map_err(|e| e.in_file(&path))?;
        files.push(ExportedFile {
            path,
            contents: yaml.into_bytes(),
        });
        if let Some(mappings) = &set.mappings {
            let path = format!("{dir}/mappings.yaml");
            let yaml = encode_mappings(mappings).map_err(|e| e.in_file(&path))?;
            files.push(ExportedFile {
                path,
                contents: yaml.into_bytes(),
            });
        }
        for (run, text) in &set.reports {
            check_segment("test run", run)?;
            reports.push((run, &set.name, text));
        }
    }
    reports.sort_by(|a, b| natural_cmp(a.0, b.0).then_with(|| natural_cmp(a.1, b.1)));
    for (i, (run, set, text)) in reports.iter().enumerate() {
        let path = format!("{ROOT}/{REPORTS}/{run}/{set}-report.yaml");
        if i > 0 && reports[i - 1].0 == *run && reports[i - 1].1 == *set {
            return Err(duplicate(&path));
        }
        files.push(ExportedFile {
            path,
            contents: text.as_bytes().to_vec(),
        });
    }
    Ok(files)
}

/// `name.yaml` / `name.yml` -> `name`.
fn yaml_stem(file: &str) -> Option<&str> {
    file.strip_suffix(".yaml")
        .or_else(|| file.strip_suffix(".yml"))
        .filter(|s| !s.is_empty())
}

fn utf8(file: &ExportedFile) -> Result<&str, KeployError> {
    std::str::from_utf8(&file.contents).map_err(|e| KeployError::Layout {
        path: file.path.clone(),
        reason: format!("is not UTF-8 text ({e})"),
    })
}

/// What one test set directory held while importing, each item with its source path.
#[derive(Default)]
struct SetParts {
    tests: Vec<(String, TestCaseDoc)>,
    mocks: Option<(String, Vec<MockDoc>)>,
    mappings: Option<(String, Mappings)>,
    reports: Vec<(String, String, String)>,
}

/// Replaces `slot`, or fails naming both files when it is already filled.
fn fill<T>(slot: &mut Option<(String, T)>, path: &str, value: T) -> Result<(), KeployError> {
    if let Some((earlier, _)) = slot {
        return Err(KeployError::Layout {
            path: path.to_owned(),
            reason: format!("duplicates {earlier}"),
        });
    }
    *slot = Some((path.to_owned(), value));
    Ok(())
}

/// Reads a layout back: the inverse of [`export_layout`], also accepting what Keploy and
/// people produce. A leading directory (`myapp/keploy/...`) is skipped; when no path has a
/// `keploy` directory, paths are read as if they were inside one. `.yml` works like `.yaml`; other
/// files, hidden files, `reports`/`testReports`/`schema`/`api-tests` (as sets), and
/// `config.yaml`/`assets` are ignored.
pub fn import_layout(files: &[ExportedFile]) -> Result<Vec<TestSetFiles>, KeployError> {
    let split = |path: &str| -> Vec<String> {
        path.split(['/', '\\'])
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let rooted = files
        .iter()
        .any(|f| split(&f.path).iter().any(|c| c == ROOT));
    let mut sets: BTreeMap<String, SetParts> = BTreeMap::new();
    for file in files {
        let parts = split(&file.path);
        // Archive tool droppings (`__MACOSX/`, `._x.yaml`, `.DS_Store`) are never data.
        if parts.iter().any(|c| c.starts_with('.') || c == "__MACOSX") {
            continue;
        }
        let rel: Vec<&str> = match (rooted, parts.iter().position(|c| c == ROOT)) {
            (true, Some(i)) => parts[i + 1..].iter().map(String::as_str).collect(),
            (true, None) => continue,
            (false, _) => parts.iter().map(String::as_str).collect(),
        };
        let path = file.path.as_str();
        match rel.as_slice() {
            [REPORTS, run, name] => {
                let Some(set) = yaml_stem(name)
                    .and_then(|s| s.strip_suffix("-report"))
                    // Only a report of a set that could exist (and be exported again).
                    .filter(|s| !s.is_empty() && !NOT_SETS.contains(s))
                else {
                    continue;
                };
                let text = utf8(file)?;
                load_stream(text).map_err(|(i, e)| {
                    KeployError::Yaml {
                        doc: format!("report document #{i}"),
                        error: e.to_string(),
                    }
                    .in_file(path)
                })?;
                let parts = sets.entry(set.to_owned()).or_default();
                parts
                    .reports
                    .push(((*run).to_owned(), path.to_owned(), text.to_owned()));
            }
            [dir, ..] if NOT_SETS.contains(dir) => {}
            [set, "tests", name] if yaml_stem(name).is_some() => {
                let doc = decode_test_case(utf8(file)?).map_err(|e| e.in_file(path))?;
                sets.entry((*set).to_owned())
                    .or_default()
                    .tests
                    .push((path.to_owned(), doc));
            }
            [set, name] if yaml_stem(name) == Some("mocks") => {
                let mocks = decode_mocks(utf8(file)?).map_err(|e| e.in_file(path))?;
                fill(
                    &mut sets.entry((*set).to_owned()).or_default().mocks,
                    path,
                    mocks,
                )?;
            }
            [set, name] if yaml_stem(name) == Some("mappings") => {
                let mappings = decode_mappings(utf8(file)?).map_err(|e| e.in_file(path))?;
                fill(
                    &mut sets.entry((*set).to_owned()).or_default().mappings,
                    path,
                    mappings,
                )?;
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(sets.len());
    for (name, mut parts) in sets {
        parts
            .tests
            .sort_by(|a, b| natural_cmp(&a.1.name, &b.1.name).then_with(|| a.0.cmp(&b.0)));
        for pair in parts.tests.windows(2) {
            if pair[0].1.name == pair[1].1.name {
                return Err(KeployError::Layout {
                    path: pair[1].0.clone(),
                    reason: format!(
                        "holds test case {:?}, as {} does",
                        pair[1].1.name, pair[0].0
                    ),
                });
            }
        }
        parts
            .reports
            .sort_by(|a, b| natural_cmp(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
        for pair in parts.reports.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(KeployError::Layout {
                    path: pair[1].1.clone(),
                    reason: format!("duplicates {}", pair[0].1),
                });
            }
        }
        let mappings = parts.mappings.map(|(_, mut m)| {
            if m.test_set_id.is_empty() {
                m.test_set_id = name.clone();
            }
            m
        });
        out.push(TestSetFiles {
            tests: parts.tests.into_iter().map(|(_, t)| t).collect(),
            mocks: parts.mocks.map(|(_, m)| m).unwrap_or_default(),
            mappings,
            reports: parts
                .reports
                .into_iter()
                .map(|(run, _, text)| (run, text))
                .collect(),
            name,
        });
    }
    out.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    Ok(out)
}
