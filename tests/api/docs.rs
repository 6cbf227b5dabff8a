//! The documents that describe settings agree with the code: every key of
//! `Config` is in `config.toml` with its default value, and in the README's
//! config table with the same default.

use std::path::Path;

use herald::Config;
use toml::{Table, Value};

/// Every key of `table` as `key` or `section.key`, with its value.
fn flatten(table: &Table) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        match value {
            Value::Table(section) => {
                out.extend(
                    section
                        .iter()
                        .map(|(k, v)| (format!("{key}.{k}"), v.clone())),
                );
            }
            other => out.push((key.clone(), other.clone())),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A default as the README writes it: strings bare, lists as `[]`.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn config_toml_sets_every_key_to_its_default() {
    let defaults = flatten(&Config::default_table());
    let file: Table = toml::from_str(&read("config.toml")).unwrap();
    let file = flatten(&file);
    let keys = |list: &[(String, Value)]| list.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&file), keys(&defaults), "config.toml's keys");
    for ((key, in_file), (_, default)) in file.iter().zip(&defaults) {
        assert_eq!(in_file, default, "config.toml: {key}");
    }
}

#[test]
fn the_readme_config_table_lists_every_key_with_its_default() {
    let readme = read("README.md");
    let rows: Vec<(String, String)> = readme
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells.get(1)?.trim_matches('`');
            let key = match key.strip_prefix('[') {
                Some(rest) => {
                    let (section, key) = rest.split_once("] ")?;
                    format!("{section}.{key}")
                }
                None => key.to_owned(),
            };
            let default = cells.get(2)?.trim_matches('`');
            let default = default
                .strip_prefix('"')
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or(default);
            Some((key, default.to_owned()))
        })
        .collect();
    for (key, value) in flatten(&Config::default_table()) {
        let row = rows.iter().find(|(k, _)| *k == key);
        let Some((_, default)) = row else {
            panic!("README's config table has no row for `{key}`");
        };
        assert_eq!(*default, shown(&value), "README default of `{key}`");
    }
}
