//! The configuration file: `petrel init` writes [`template`], every setting with its default and
//! what it does; `petrel run --config FILE` reads one with [`parse`] or [`load`]. A key the
//! table does not know, a value of the wrong kind and a value out of range are all refused,
//! naming the key, the value and what is allowed: a typo must not silently run a default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::settings::{Setting, Settings, SETTINGS};
use super::value::Raw;
use super::{Config, ConfigError};

/// Largest configuration file read: the template is about 25 KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Comment lines are wrapped to this width.
const WIDTH: usize = 96;

/// Why a configuration file was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum FileError {
    /// The file could not be read (or is larger than [`MAX_FILE_BYTES`]).
    Io(String),
    /// The file is not valid TOML.
    Syntax(String),
    /// A key no setting has; `suggestion` is the nearest known one, if any is close.
    UnknownKey {
        /// The dotted key as written.
        key: String,
        /// A known key it is probably a typo of.
        suggestion: Option<&'static str>,
    },
    /// A value the setting cannot take.
    BadValue {
        /// The setting.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What the setting allows.
        allowed: String,
    },
    /// Every value parsed, but together they are out of range ([`Config::validate`]).
    OutOfRange(ConfigError),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(e) => f.write_str(e),
            FileError::Syntax(e) => write!(f, "not valid TOML: {e}"),
            FileError::UnknownKey { key, suggestion: Some(s) } => {
                write!(f, "unknown setting {key} (did you mean {s}?)")
            }
            FileError::UnknownKey { key, suggestion: None } => write!(
                f,
                "unknown setting {key} (`petrel init` writes a file listing every setting)"
            ),
            FileError::BadValue { key, value, allowed } => {
                write!(f, "setting {key} = {value} is not allowed: expected {allowed}")
            }
            FileError::OutOfRange(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FileError {}

/// The file `petrel init` writes: every setting, table by table, at its value in `config`,
/// each under a comment saying what it does. It parses back to `config`.
pub fn template(config: &Config) -> String {
    let settings = Settings::from_config(config.clone());
    let mut out = String::from(
        "# petrel configuration. Every setting is listed with its default; delete the ones you\n\
         # do not change, or leave them. Durations are strings with a unit (ns, us, ms, s, m, h,\n\
         # d); sizes are in bytes. Command-line flags override what is set here.\n",
    );
    let mut table = "";
    for setting in SETTINGS {
        let (section, name) = setting.split();
        if section != table {
            out.push_str(&format!("\n[{section}]\n"));
            table = section;
        }
        out.push('\n');
        wrap_comment(&mut out, setting.doc);
        out.push_str(&format!("{name} = {}\n", (setting.render)(&settings)));
    }
    out
}

fn wrap_comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// `text` applied over `base`: the settings it names change, the rest keep their values in
/// `base`. The result has passed [`Config::validate`].
pub fn parse(text: &str, base: Config) -> Result<Config, FileError> {
    let raw: Raw = basic_toml::from_str(text).map_err(|e| FileError::Syntax(e.to_string()))?;
    let mut leaves = Vec::new();
    flatten("", raw, &mut leaves);
    let by_key: BTreeMap<&str, &Setting> = SETTINGS.iter().map(|s| (s.key, s)).collect();
    let mut settings = Settings::from_config(base);
    for (key, value) in leaves {
        let Some(setting) = by_key.get(key.as_str()) else {
            return Err(FileError::UnknownKey { suggestion: nearest(&key), key });
        };
        (setting.apply)(&mut settings, &value).map_err(|allowed| FileError::BadValue {
            key: setting.key,
            value: value.to_string(),
            allowed,
        })?;
    }
    let config = settings.into_config();
    config.validate().map_err(FileError::OutOfRange)?;
    Ok(config)
}

/// Reads `path` (at most [`MAX_FILE_BYTES`]) and parses it over `base`.
pub fn load(path: &Path, base: Config) -> Result<Config, FileError> {
    let io = |e: std::io::Error| FileError::Io(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(FileError::Io(format!(
            "{}: {len} bytes, larger than the {MAX_FILE_BYTES} a configuration may have",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse(&text, base)
}

/// Every value under `raw` with its dotted key. A table where a setting expects a value
/// becomes keys under it, which no setting has, so it is refused by name.
fn flatten(prefix: &str, raw: Raw, out: &mut Vec<(String, Raw)>) {
    match raw {
        Raw::Table(table) => {
            for (name, value) in table {
                let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
                flatten(&key, value, out);
            }
        }
        value => out.push((prefix.to_owned(), value)),
    }
}

/// The known key closest to `key` by edit distance, if it is a plausible typo.
fn nearest(key: &str) -> Option<&'static str> {
    let (distance, best) = SETTINGS.iter().map(|s| (edit_distance(key, s.key), s.key)).min()?;
    (distance <= 3 && distance < key.len() / 2).then_some(best)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_template_parses_back_to_the_defaults() {
        let text = template(&Config::default());
        let parsed = parse(&text, Config { network: "other".into(), ..Config::default() });
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        // `Config` holds floats and a key, so it has no `PartialEq`; its Debug form is total.
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn every_setting_is_read_from_its_place_in_the_template() {
        // Each setting in turn gets a value other than its default through the file, and the
        // Config must change: a setting whose `apply` wrote the wrong field would not show.
        let base = format!("{:?}", Config::default());
        for setting in SETTINGS {
            let (section, name) = setting.split();
            let settings = Settings::from_config(Config::default());
            let Some(other) = another_value(setting.key, &(setting.render)(&settings)) else {
                panic!("{}: no other value for {}", setting.key, (setting.render)(&settings))
            };
            let text = if section.is_empty() {
                format!("{name} = {other}\n")
            } else {
                format!("[{section}]\n{name} = {other}\n")
            };
            let raw: Raw = basic_toml::from_str(&text).unwrap();
            let mut leaves = Vec::new();
            flatten("", raw, &mut leaves);
            let mut changed = Settings::from_config(Config::default());
            (setting.apply)(&mut changed, &leaves[0].1)
                .unwrap_or_else(|e| panic!("{}: {other}: {e}", setting.key));
            assert_eq!((setting.render)(&changed), other, "{}", setting.key);
            assert_ne!(format!("{:?}", changed.into_config()), base, "{}", setting.key);
        }
    }

    /// A different value of the same kind as `rendered`, where there is an obvious one.
    fn another_value(key: &str, rendered: &str) -> Option<String> {
        if key == "bootstrap" {
            return Some(format!("[\"{}@127.0.0.2:7\"]", "ab".repeat(32)));
        }
        if let Some(inner) = rendered.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            let duration = inner.starts_with(|c: char| c.is_ascii_digit())
                && inner.ends_with(|c: char| c.is_ascii_alphabetic());
            let other = match inner {
                _ if duration => "7ms",
                _ if inner.contains(':') => "127.0.0.2:7",
                "none" | "batch" => "always",
                "info" => "debug",
                _ => "other",
            };
            return Some(format!("\"{other}\""));
        }
        Some(match rendered {
            "true" => "false".into(),
            "false" => "true".into(),
            "[]" => r#"["127.0.0.2:7"]"#.into(),
            s if s.contains('.') || s.contains('e') => {
                format!("{:?}", s.parse::<f64>().ok()? + 0.5)
            }
            s => (s.parse::<u64>().ok()? + 1).to_string(),
        })
    }

    #[test]
    fn every_field_of_config_has_a_setting() {
        // The field paths of `Config`, read from its pretty Debug form (one field per line,
        // nested structs indented), so a field added to any part of it without a setting
        // fails here rather than being silently unconfigurable.
        let mut stack: Vec<Option<String>> = Vec::new();
        let mut fields = std::collections::BTreeSet::new();
        for line in format!("{:#?}", Config::default()).lines().skip(1) {
            let line = line.trim();
            if matches!(line, "}" | "}," | ")" | ")," | "]" | "],") {
                stack.pop();
                continue;
            }
            let opens = line.ends_with('{') || line.ends_with('(') || line.ends_with('[');
            match line.split_once(": ") {
                Some((name, _)) if !name.contains(' ') => {
                    let path: Vec<&str> = stack.iter().flatten().map(String::as_str).collect();
                    let path = [path, vec![name]].concat().join(".");
                    if opens {
                        stack.push(Some(name.to_owned()));
                    }
                    fields.insert(path);
                }
                // `GossipConfig {` inside `Some(`: a level without a name.
                _ if opens => stack.push(None),
                _ => {}
            }
        }
        // A path with fields under it is a struct, not a setting (`Some(addr)` has none).
        let parents: std::collections::BTreeSet<String> =
            fields.iter().filter_map(|f| f.rsplit_once('.')).map(|(p, _)| p.to_owned()).collect();
        fields.retain(|f| !parents.contains(f));
        let unset = [
            "keypair",
            "data_dir",
            "rng_seed",
            "dht.local_addrs",
            "dht.persist",
            "dht.rng_seed",
            "gossip.rng_seed",
            "dht.store.hot_max_bytes",
            "dht.store.pin_writes",
        ];
        for key in unset {
            assert!(fields.remove(key), "{key} is no longer a field");
        }
        let keys: std::collections::BTreeSet<String> = SETTINGS
            .iter()
            .map(|s| s.key.to_owned())
            .filter(|k| !k.ends_with(".enabled"))
            .collect();
        assert_eq!(fields, keys);
    }

    #[test]
    fn a_setting_in_a_table_overrides_its_default_and_leaves_the_rest() {
        let text = "listen = \"0.0.0.0:4001\"\n[limits]\nidle_timeout = \"90s\"\n\
                    [gossip]\nenabled = false\nd = 9\n[dht.lookup]\nalpha = 4\n";
        let c = parse(text, Config::default()).unwrap();
        assert_eq!(c.listen, "0.0.0.0:4001".parse().unwrap());
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.dht.lookup.alpha, 4);
        assert!(c.gossip.is_none());
        assert_eq!(c.limits.max_connections, Config::default().limits.max_connections);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name_with_the_nearest_known_one() {
        let e = parse("[limits]\nmax_conections = 5\n", Config::default()).unwrap_err();
        assert_eq!(
            e,
            FileError::UnknownKey {
                key: "limits.max_conections".into(),
                suggestion: Some("limits.max_connections")
            }
        );
        assert!(e.to_string().contains("did you mean limits.max_connections"));
        let e = parse("[nonsense]\nwhatever = 1\n", Config::default()).unwrap_err();
        assert!(matches!(e, FileError::UnknownKey { suggestion: None, .. }), "{e:?}");
        // A table where a value belongs.
        let e = parse("listen = { port = 5 }\n", Config::default()).unwrap_err();
        assert!(matches!(e, FileError::UnknownKey { ref key, .. } if key == "listen.port"));
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_key_the_value_and_what_is_allowed() {
        let e = parse("[limits]\nidle_timeout = 60\n", Config::default()).unwrap_err();
        let FileError::BadValue { key, value, allowed } = &e else { panic!("{e:?}") };
        assert_eq!((*key, value.as_str()), ("limits.idle_timeout", "60"));
        assert!(allowed.contains("duration"), "{allowed}");
        let e = parse("id_pow_bits = 300\n", Config::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting id_pow_bits = 300 is not allowed: expected a whole number from 0 to 255"
        );
        let e = parse("bootstrap = [\"nobody@127.0.0.1:1\"]\n", Config::default()).unwrap_err();
        assert!(e.to_string().contains("NODEID@HOST:PORT"), "{e}");
    }

    #[test]
    fn values_that_parse_but_do_not_fit_together_are_refused() {
        let e = parse("max_frame_bytes = 4096\n", Config::default()).unwrap_err();
        assert!(matches!(e, FileError::OutOfRange(ConfigError { key: "max_frame_bytes", .. })));
        let e = parse("[workers]\nthreads = 0\n", Config::default()).unwrap_err();
        assert!(e.to_string().contains("workers.threads"), "{e}");
    }

    #[test]
    fn broken_toml_and_oversized_files_are_refused() {
        assert!(matches!(parse("listen = \n", Config::default()), Err(FileError::Syntax(_))));
        assert!(matches!(parse("a = 1\na = 2\n", Config::default()), Err(FileError::Syntax(_))));
        let dir = std::env::temp_dir().join(format!("petrel-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(load(&big, Config::default()), Err(FileError::Io(_))));
        assert!(matches!(load(&dir.join("absent.toml"), Config::default()), Err(FileError::Io(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
