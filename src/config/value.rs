//! The value of one setting in a configuration file: what the TOML parser hands us ([`Raw`]),
//! and how each setting's Rust type is written to and read from it ([`Value`]).
//!
//! Durations are strings with a unit (`"250ms"`, `"10s"`, `"5m"`, `"6h"`), so a file never
//! leaves the reader guessing whether `30` meant seconds or milliseconds. Sizes are bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use log::LevelFilter;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::addr::PeerAddr;
use crate::store::SyncMode;

/// A TOML value as parsed, before it is checked against the setting it is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// `true` or `false`.
    Bool(bool),
    /// An integer (TOML integers are 64-bit signed).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Raw>),
    /// A table (a `[section]` or an inline table).
    Table(BTreeMap<String, Raw>),
}

impl fmt::Display for Raw {
    /// The value as it would be written in TOML, for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::Int(i) => write!(f, "{i}"),
            Raw::Float(x) => write!(f, "{x:?}"),
            Raw::Str(s) => write!(f, "{}", quote(s)),
            Raw::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Raw::Table(_) => f.write_str("a table"),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        i64::try_from(v).map(Raw::Int).map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut table = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, Raw>()? {
            table.insert(key, value);
        }
        Ok(Raw::Table(table))
    }
}

/// A setting's type as written in a configuration file. `parse` errors say what is allowed,
/// so the caller can name the setting and the value beside it.
pub trait Value: Sized {
    /// The value as a TOML literal.
    fn render(&self) -> String;
    /// The value from TOML, or what the setting allows.
    fn parse(raw: &Raw) -> Result<Self, String>;
}

pub use crate::text::quote;

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn render(&self) -> String {
                self.to_string()
            }

            fn parse(raw: &Raw) -> Result<$t, String> {
                // TOML integers stop at i64::MAX; a larger maximum is not writable anyway.
                let max = i64::try_from(<$t>::MAX).unwrap_or(i64::MAX);
                let allowed = || format!("a whole number from 0 to {max}");
                match raw {
                    Raw::Int(i) => <$t>::try_from(*i).map_err(|_| allowed()),
                    _ => Err(allowed()),
                }
            }
        }
    )*};
}

whole_number!(u8, u32, u64, usize);

impl Value for f64 {
    fn render(&self) -> String {
        // `{:?}` always writes a decimal point or an exponent, as TOML floats need.
        format!("{self:?}")
    }

    fn parse(raw: &Raw) -> Result<f64, String> {
        let x = match raw {
            Raw::Float(x) => *x,
            Raw::Int(i) => *i as f64,
            _ => return Err("a number".into()),
        };
        if x.is_finite() {
            Ok(x)
        } else {
            Err("a finite number".into())
        }
    }
}

impl Value for bool {
    fn render(&self) -> String {
        self.to_string()
    }

    fn parse(raw: &Raw) -> Result<bool, String> {
        match raw {
            Raw::Bool(b) => Ok(*b),
            _ => Err("true or false".into()),
        }
    }
}

impl Value for String {
    fn render(&self) -> String {
        quote(self)
    }

    fn parse(raw: &Raw) -> Result<String, String> {
        match raw {
            Raw::Str(s) => Ok(s.clone()),
            _ => Err("a string".into()),
        }
    }
}

const DURATION_ALLOWED: &str =
    "a duration: a string of a number and a unit ns, us, ms, s, m, h or d, such as \"250ms\", \
     \"10s\" or \"6h\"";

/// Units from the largest down, so a value renders in the largest unit that holds it whole.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

impl Value for Duration {
    fn render(&self) -> String {
        let nanos = self.as_nanos();
        if nanos == 0 {
            return quote("0s");
        }
        let (unit, size) =
            UNITS.iter().find(|(_, size)| nanos.is_multiple_of(*size)).unwrap_or(&UNITS[6]);
        quote(&format!("{}{unit}", nanos / size))
    }

    fn parse(raw: &Raw) -> Result<Duration, String> {
        let Raw::Str(s) = raw else { return Err(DURATION_ALLOWED.into()) };
        let split = s.find(|c: char| c.is_ascii_alphabetic()).ok_or(DURATION_ALLOWED)?;
        let (number, unit) = s.split_at(split);
        let size = UNITS.iter().find(|(u, _)| *u == unit).ok_or(DURATION_ALLOWED)?.1;
        let number: f64 = number.trim().parse().map_err(|_| DURATION_ALLOWED)?;
        let secs = number * size as f64 / 1e9;
        Duration::try_from_secs_f64(secs).map_err(|_| DURATION_ALLOWED.into())
    }
}

impl Value for SocketAddr {
    fn render(&self) -> String {
        quote(&self.to_string())
    }

    fn parse(raw: &Raw) -> Result<SocketAddr, String> {
        let allowed = "an address and port such as \"0.0.0.0:4001\" or \"[::]:4001\"";
        match raw {
            Raw::Str(s) => s.parse().map_err(|_| allowed.into()),
            _ => Err(allowed.into()),
        }
    }
}

/// An optional address: `""` is none (the service it names is off).
impl Value for Option<SocketAddr> {
    fn render(&self) -> String {
        self.as_ref().map_or_else(|| quote(""), Value::render)
    }

    fn parse(raw: &Raw) -> Result<Option<SocketAddr>, String> {
        match raw {
            Raw::Str(s) if s.is_empty() => Ok(None),
            raw => SocketAddr::parse(raw)
                .map(Some)
                .map_err(|allowed| format!("{allowed}, or \"\" for off")),
        }
    }
}

impl Value for PeerAddr {
    fn render(&self) -> String {
        quote(&self.to_string())
    }

    fn parse(raw: &Raw) -> Result<PeerAddr, String> {
        let allowed = "NODEID@HOST:PORT, the node id as 64 hex digits";
        match raw {
            Raw::Str(s) => s.parse().map_err(|_| allowed.into()),
            _ => Err(allowed.into()),
        }
    }
}

impl<T: Value> Value for Vec<T> {
    fn render(&self) -> String {
        let items: Vec<String> = self.iter().map(Value::render).collect();
        format!("[{}]", items.join(", "))
    }

    fn parse(raw: &Raw) -> Result<Vec<T>, String> {
        match raw {
            Raw::Array(items) => items
                .iter()
                .map(|item| T::parse(item).map_err(|allowed| format!("an array of: {allowed}")))
                .collect(),
            // No setting's element type takes a table, so this yields what an element allows.
            _ => Err(format!(
                "an array of: {}",
                T::parse(&Raw::Table(BTreeMap::new())).err().unwrap_or_default()
            )),
        }
    }
}

impl Value for SyncMode {
    fn render(&self) -> String {
        quote(self.name())
    }

    fn parse(raw: &Raw) -> Result<SyncMode, String> {
        let allowed = "one of \"none\", \"batch\", \"always\"";
        match raw {
            Raw::Str(s) => s.parse().map_err(|_| allowed.into()),
            _ => Err(allowed.into()),
        }
    }
}

impl Value for LevelFilter {
    fn render(&self) -> String {
        quote(&self.as_str().to_ascii_lowercase())
    }

    fn parse(raw: &Raw) -> Result<LevelFilter, String> {
        let allowed = "one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\"";
        match raw {
            Raw::Str(s) => s.parse().map_err(|_| allowed.into()),
            _ => Err(allowed.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Raw {
        Raw::Str(v.into())
    }

    #[test]
    fn durations_render_in_the_largest_whole_unit_and_read_back() {
        for (d, text) in [
            (Duration::ZERO, "\"0s\""),
            (Duration::from_millis(250), "\"250ms\""),
            (Duration::from_secs(10), "\"10s\""),
            (Duration::from_secs(300), "\"5m\""),
            (Duration::from_secs(6 * 3600), "\"6h\""),
            (Duration::from_secs(365 * 86_400), "\"365d\""),
            (Duration::from_nanos(1_500), "\"1500ns\""),
        ] {
            assert_eq!(d.render(), text);
            let inner = text.trim_matches('"');
            assert_eq!(Duration::parse(&s(inner)), Ok(d), "{text}");
        }
        assert_eq!(Duration::parse(&s("1.5s")), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn a_duration_without_a_unit_or_with_a_bad_one_is_refused() {
        for bad in [Raw::Int(30), s("30"), s("30 parsecs"), s("-1s"), s("s"), s("1e400s")] {
            let e = Duration::parse(&bad).unwrap_err();
            assert!(e.contains("duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn whole_numbers_are_checked_against_their_type() {
        assert_eq!(u8::parse(&Raw::Int(255)), Ok(255));
        assert_eq!(u8::parse(&Raw::Int(256)).unwrap_err(), "a whole number from 0 to 255");
        assert!(usize::parse(&Raw::Int(-1)).is_err());
        assert!(u32::parse(&s("5")).is_err());
        assert!(usize::parse(&Raw::Float(5.0)).is_err());
    }

    #[test]
    fn floats_take_integers_but_not_infinity() {
        assert_eq!(f64::parse(&Raw::Int(-5)), Ok(-5.0));
        assert_eq!((-5.0f64).render(), "-5.0");
        assert!(f64::parse(&Raw::Float(f64::INFINITY)).is_err());
        assert!(f64::parse(&Raw::Float(f64::NAN)).is_err());
    }

    #[test]
    fn an_optional_address_is_off_when_empty() {
        assert_eq!(Option::<SocketAddr>::parse(&s("")), Ok(None));
        let a: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(Option::<SocketAddr>::parse(&s("127.0.0.1:9100")), Ok(Some(a)));
        assert!(Option::<SocketAddr>::parse(&s("localhost")).unwrap_err().contains("off"));
    }
}
