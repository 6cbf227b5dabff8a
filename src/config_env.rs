//! `HERALD_*` environment variables as settings: each key of the config
//! file is `HERALD_<KEY>` in upper case, a key inside a section is
//! `HERALD_<SECTION>__<KEY>` (`HERALD_BROKER__URL`), lists are
//! comma-separated. `HERALD_CONFIG` names the file itself.
//!
//! The variables are turned into a TOML table shaped like the file, typed
//! after the defaults (a number where the default is a number), so that the
//! file's one deserializer checks both. An unknown variable, or a value
//! that does not parse, is an error naming the variable; values are never
//! repeated in errors, since some are secrets.

use toml::{Table, Value};

/// A `HERALD_*` variable that is no setting, or whose value does not fit
/// it. Names the variable, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment variable {var}: {reason}")]
pub struct InvalidVar {
    pub var: String,
    pub reason: String,
}

/// The prefix of every herald variable.
pub const PREFIX: &str = "HERALD_";

/// The variable that names the config file rather than a setting.
pub const CONFIG_PATH_VAR: &str = "HERALD_CONFIG";

/// The variable for `key` (`"broker.url"` → `HERALD_BROKER__URL`).
pub fn var_name(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// Every setting's variable, in the order of `defaults` (the default
/// configuration as a table).
pub fn var_names(defaults: &Table) -> Vec<String> {
    let mut names = Vec::new();
    for (key, value) in defaults {
        match value {
            Value::Table(section) => {
                names.extend(section.keys().map(|k| var_name(&format!("{key}.{k}"))));
            }
            _ => names.push(var_name(key)),
        }
    }
    names
}

/// The settings `vars` (the process environment, or pairs in tests) give,
/// as a table to lay over the file's. `defaults` tells which keys exist and
/// their types. Variables without the prefix are ignored.
pub fn settings_table(
    vars: impl IntoIterator<Item = (String, String)>,
    defaults: &Table,
) -> Result<Table, InvalidVar> {
    let mut table = Table::new();
    for (var, raw) in vars {
        let Some(name) = var.strip_prefix(PREFIX) else {
            continue;
        };
        if var == CONFIG_PATH_VAR {
            continue;
        }
        let error = |reason: &str| InvalidVar {
            var: var.clone(),
            reason: reason.into(),
        };
        let lower = name.to_lowercase();
        let path: Vec<&str> = lower.split("__").collect();
        let default = match path.as_slice() {
            [key] => defaults.get(*key),
            [section, key] => match defaults.get(*section) {
                Some(Value::Table(inner)) => inner.get(*key),
                _ => None,
            },
            _ => None,
        };
        let Some(default) = default else {
            return Err(error(
                "no such setting (see `herald --help` for the variables)",
            ));
        };
        let value = typed_like(default, &raw).map_err(|reason| error(&reason))?;
        match path.as_slice() {
            [key] => {
                table.insert((*key).to_owned(), value);
            }
            [section, key] => {
                let entry = table
                    .entry((*section).to_owned())
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(inner) = entry {
                    inner.insert((*key).to_owned(), value);
                }
            }
            _ => {}
        }
    }
    Ok(table)
}

/// `raw` read as a value of `default`'s type.
fn typed_like(default: &Value, raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    Ok(match default {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(
            trimmed
                .parse()
                .map_err(|_| "must be a whole number".to_owned())?,
        ),
        Value::Float(_) => {
            Value::Float(trimmed.parse().map_err(|_| "must be a number".to_owned())?)
        }
        Value::Boolean(_) => Value::Boolean(match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err("must be true or false".into()),
        }),
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
        Value::Table(_) => {
            return Err("names a section: set its keys as HERALD_<SECTION>__<KEY>".into())
        }
        Value::Datetime(_) => return Err("cannot be set from the environment".into()),
    })
}

/// Lays `over` onto `base`, key by key, sections merged rather than
/// replaced.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(inner)), Value::Table(over_inner)) => merge(inner, over_inner),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Table {
        toml::from_str(
            "host = \"127.0.0.1\"\nport = 8001\necho = false\nkeys = []\n\
             [broker]\nkind = \"memory\"\nurl = \"redis://x\"\n",
        )
        .unwrap()
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_become_typed_settings() {
        let table = settings_table(
            vars(&[
                ("HERALD_PORT", " 9000 "),
                ("HERALD_ECHO", "true"),
                ("HERALD_KEYS", "a, b,,c"),
                ("HERALD_BROKER__KIND", "redis"),
                ("HERALD_CONFIG", "/etc/herald.toml"),
                ("PATH", "/usr/bin"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(table["port"].as_integer(), Some(9000));
        assert_eq!(table["echo"].as_bool(), Some(true));
        assert_eq!(table["keys"].as_array().unwrap().len(), 3);
        assert_eq!(table["broker"]["kind"].as_str(), Some("redis"));
        assert!(!table.contains_key("config"));
    }

    #[test]
    fn unknown_or_unparsable_variables_name_the_variable_not_the_value() {
        for (var, value) in [
            ("HERALD_FOO", "1"),
            ("HERALD_BROKER__FOO", "1"),
            ("HERALD_BROKER", "x"),
            ("HERALD_PORT", "secret-looking"),
            ("HERALD_ECHO", "maybe"),
        ] {
            let err = settings_table(vars(&[(var, value)]), &defaults()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var), "{text}");
            assert!(!text.contains(value), "{text}");
        }
    }

    #[test]
    fn every_setting_has_a_variable() {
        assert_eq!(
            var_names(&defaults()),
            [
                "HERALD_BROKER__KIND",
                "HERALD_BROKER__URL",
                "HERALD_ECHO",
                "HERALD_HOST",
                "HERALD_KEYS",
                "HERALD_PORT"
            ]
        );
    }

    #[test]
    fn sections_merge_key_by_key() {
        let mut base = defaults();
        let over: Table = toml::from_str("port = 1\n[broker]\nkind = \"redis\"\n").unwrap();
        merge(&mut base, over);
        assert_eq!(base["port"].as_integer(), Some(1));
        assert_eq!(base["broker"]["kind"].as_str(), Some("redis"));
        assert_eq!(base["broker"]["url"].as_str(), Some("redis://x"));
    }
}
