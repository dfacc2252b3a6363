//! The shipped files that are not Rust: dashboards, alert rules, deploy manifests. Shared by
//! `stack` (runs them against a real Prometheus) and `deploy` (checks them offline).

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `dir` (relative to the repository) whose names end in one of `exts`, sorted.
pub fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![repo().join(dir)];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if exts.iter().any(|x| path.to_string_lossy().ends_with(x)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

pub fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

pub fn read_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", rel(path)));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", rel(path)))
}

/// Every document of a multi-document YAML file (Kubernetes manifests).
pub fn read_yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", rel(path)));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", rel(path)))
        })
        .filter(|v: &Yaml| !v.is_null())
        .collect()
}

pub fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", rel(path)));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", rel(path)))
}

/// The Grafana dashboards: `dashboards/*.json`.
pub fn dashboards() -> Vec<(PathBuf, Json)> {
    files("dashboards", &[".json"])
        .into_iter()
        .map(|p| {
            let d = read_json(&p);
            (p, d)
        })
        .collect()
}

/// All panels of a dashboard, rows' nested panels included.
pub fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// One PromQL target of one panel.
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

impl PanelQuery {
    pub fn name(&self) -> String {
        format!("{} / {:?} ({})", self.dashboard, self.panel, self.ref_id)
    }
}

pub fn panel_queries(dashboard: &Json) -> Vec<PanelQuery> {
    let uid = dashboard["uid"].as_str().unwrap_or("?").to_string();
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                dashboard: uid.clone(),
                panel: p["title"].as_str().unwrap_or("?").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    out
}

/// `label_values(SELECTOR, LABEL)` variable queries: (variable name, selector, label).
pub fn label_value_queries(dashboard: &Json) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: unsupported query {q:?}", v["name"]));
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {}: {q:?} needs a selector", v["name"]));
        out.push((
            v["name"].as_str().unwrap_or("?").to_string(),
            selector.trim().to_string(),
            label.trim().to_string(),
        ));
    }
    out
}

/// Grafana's variables replaced as a dashboard with "All" selected would send them:
/// interval variables by concrete windows, every template variable by `.*`.
pub fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("${__interval}", "15s")
        .replace("$__range", "1h")
        .replace("${__range}", "1h");
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name_len, skip) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unclosed ${");
            (end, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (end, end)
        };
        assert!(name_len > 0, "a lone $ in {expr:?}");
        out.push_str(".*");
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// One rule of `alerts/*.yml`.
pub struct Rule {
    pub file: String,
    pub group: String,
    /// `record` or `alert` name.
    pub name: String,
    pub recording: bool,
    pub expr: String,
    pub rule: Yaml,
}

pub fn rule_files() -> Vec<PathBuf> {
    files("alerts", &[".yml", ".yaml"])
        .into_iter()
        .filter(|p| p.parent() == Some(&repo().join("alerts")))
        .collect()
}

pub fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for path in rule_files() {
        let doc = read_yaml(&path);
        for g in doc["groups"].as_sequence().expect("groups") {
            for r in g["rules"].as_sequence().expect("rules") {
                let (name, recording) = match (r["record"].as_str(), r["alert"].as_str()) {
                    (Some(n), None) => (n, true),
                    (None, Some(n)) => (n, false),
                    _ => panic!("{}: a rule needs record or alert: {r:?}", rel(&path)),
                };
                out.push(Rule {
                    file: rel(&path),
                    group: g["name"].as_str().expect("group name").to_string(),
                    name: name.to_string(),
                    recording,
                    expr: r["expr"].as_str().expect("expr").to_string(),
                    rule: r.clone(),
                });
            }
        }
    }
    out
}

/// `spendwatch_*` metric names a PromQL expression refers to (recording-rule names, which
/// contain a colon, excluded).
pub fn spendwatch_metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("spendwatch_") {
        let start = i + pos;
        let preceded = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |e| start + e);
        let name = &expr[start..end];
        if !preceded && !name.contains(':') {
            out.push(name.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn substitute_replaces_every_variable() {
    assert_eq!(
        substitute(r#"rate(x{a=~"$source", b=~"${account}"}[$__rate_interval]) / $__range"#),
        r#"rate(x{a=~".*", b=~".*"}[1m]) / 1h"#
    );
    assert_eq!(
        spendwatch_metric_names(
            "a:spendwatch_x:b + spendwatch_unit_cost{x=\"spendwatch_no\"} / my_spendwatch_y"
        ),
        vec!["spendwatch_unit_cost", "spendwatch_no"]
    );
}
