//! Reading YAML the way Kubernetes reads it. `kubectl` and the API server parse manifests with
//! go-yaml v2 (YAML 1.1 scalars) and hand the result on as JSON, so an *unquoted* `on`, `off`,
//! `yes`, `no`, `y`, `n` (in the three spellings YAML 1.1 allows: `on`, `On`, `ON`) is a boolean,
//! while the same word in quotes stays a string. serde_yaml_ng resolves plain scalars by YAML
//! 1.2's core schema (only `true`/`false`), so this module builds the JSON value itself from
//! serde_yaml_ng's events and resolves those words as YAML 1.1 does.
//!
//! Whether a scalar was quoted is not part of serde's data model. serde_yaml_ng hands a scalar
//! that appears verbatim in the input over as a slice *of the input*; a quoted scalar's slice
//! starts right after its quote, a plain scalar's does not (a plain scalar cannot follow a quote
//! character directly). Tests pin this down; if a future serde_yaml_ng stops borrowing, words
//! are simply kept as strings (YAML 1.2's reading) and those tests fail.
//!
//! Numbers too: go-yaml v2 reads `0600` as octal 384, `1_000` as 1000 and `09` as 9.0, all
//! (written 9, as its JSON is), all of which YAML 1.2 leaves strings; so `log_file_mode: 0600` under `parameters` is refused, as
//! the API server refuses it, and `instances: 03` is 3.
//!
//! Map keys become strings as in Kubernetes' YAML-to-JSON conversion (`true`, `1`, ...);
//! duplicate keys are an error, as in the API server's strict decoding.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// The YAML 1.1 reading of a plain (unquoted, untagged) scalar that YAML 1.2 leaves a string.
pub fn yaml11_bool(word: &str) -> Option<bool> {
    match word {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// The YAML 1.1 number (as go-yaml v2 resolves it) of a plain scalar YAML 1.2 leaves a string:
/// `_` separators (`1_000`), octal with a leading zero (`0600` is 384), `0o17`, `0b101`, and
/// decimal floats with leading zeros (`09` is 9.0).
pub fn yaml11_number(word: &str) -> Option<Value> {
    let plain = word.replace('_', "");
    let (negative, digits) = match plain.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let radix = |prefix: &str, radix: u32| {
        digits
            .strip_prefix(prefix)
            .filter(|d| !d.is_empty())
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    let integer = radix("0b", 2)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0x", 16))
        .or_else(|| {
            let octal = digits.len() > 1 && digits.starts_with('0');
            (octal && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
                .then(|| i64::from_str_radix(digits, 8).ok())
                .flatten()
        })
        .or_else(|| {
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<i64>().ok())
                .flatten()
        });
    if let Some(n) = integer {
        return Some(Value::Number(if negative { -n } else { n }.into()));
    }
    // go-yaml v2's float syntax: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(whole)
        && all_digits(fraction)
        && (!whole.is_empty() || !fraction.is_empty())
        && (mantissa.contains('.') || !whole.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    if !(mantissa_ok && exponent_ok) || (whole.is_empty() && !mantissa.starts_with('.')) {
        return None;
    }
    let value: f64 = plain.parse().ok()?;
    Number::from_f64(value).map(Value::Number)
}

/// Deserialize one YAML document into JSON with YAML 1.1 scalar resolution. `input` must be
/// the text the deserializer reads (it is used to tell plain scalars from quoted ones).
#[derive(Debug, Clone, Copy)]
pub struct Yaml11<'a> {
    pub input: &'a str,
}

impl<'de> DeserializeSeed<'de> for Yaml11<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Yaml11<'_> {
    /// Whether `s` (borrowed from the input) was written as a plain scalar: not preceded by a
    /// quote, and not after a tag such as `!!str`.
    fn is_plain(&self, s: &str) -> bool {
        let base = self.input.as_ptr() as usize;
        let start = s.as_ptr() as usize;
        if start < base || start + s.len() > base + self.input.len() {
            return false; // not borrowed from the input: we cannot tell, keep the string
        }
        let before = self.input.get(..start - base).unwrap_or_default();
        if before.ends_with(['"', '\'']) {
            return false;
        }
        // `!!str on`, `!!bool on`: an explicit tag decides, not the word.
        let last_token = before
            .trim_end_matches([' ', '\t'])
            .rsplit([' ', '\t', '\n', '\r', ',', '[', '{', ':', '-'])
            .next()
            .unwrap_or_default();
        !last_token.starts_with('!')
    }
}

impl<'de> Visitor<'de> for Yaml11<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        i64::try_from(v)
            .map(|v| Value::Number(v.into()))
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v)
            .map(|v| Value::Number(v.into()))
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity; like a conversion through serde_json, they become null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value, E> {
        if !self.is_plain(v) {
            return Ok(Value::String(v.to_string()));
        }
        Ok(match (yaml11_bool(v), yaml11_number(v)) {
            (Some(b), _) => Value::Bool(b),
            (None, Some(n)) => n,
            (None, None) => Value::String(v.to_string()),
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            out.push(item);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(self)? {
            let key = match key {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => "null".to_string(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(de::Error::custom(
                        "a list or a map cannot be a key; keys must be scalars",
                    ))
                }
            };
            let value = map.next_value_seed(self)?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags such as `!Name` are not supported in manifests",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Result<Value, String> {
        let mut docs = serde_yaml_ng::Deserializer::from_str(text);
        let doc = docs.next().ok_or("no document")?;
        Yaml11 { input: text }
            .deserialize(doc)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn unquoted_yaml11_words_are_booleans() {
        let v = read("a: off\nb: On\nc: YES\nd: n\ne: y\nf: true\ng: False\nh: NO\n").unwrap();
        assert_eq!(
            v,
            json!({"a": false, "b": true, "c": true, "d": false, "e": true, "f": true, "g": false, "h": false})
        );
    }

    #[test]
    fn quoted_and_other_words_stay_strings() {
        let v =
            read("a: \"off\"\nb: 'on'\nc: oN\nd: offline\ne: \"yes\"\nf: |\n  on\ng: !!str on\n")
                .unwrap();
        assert_eq!(
            v,
            json!({"a": "off", "b": "on", "c": "oN", "d": "offline", "e": "yes", "f": "on\n", "g": "on"})
        );
    }

    #[test]
    fn flow_collections_and_sequences() {
        let v = read("a: [on, 'off', \"no\", yes]\nb: {x: off, z: \"on\"}\nc:\n- on\n- 'on'\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"a": [true, "off", "no", true], "b": {"x": false, "z": "on"}, "c": [true, "on"]})
        );
    }

    #[test]
    fn yaml11_numbers_that_yaml12_reads_as_strings() {
        let v = read("a: 0600\nb: 1_000\nc: 0o17\nd: 0b101\ne: 09\nf: -010\ng: '0600'\nh: 1.2.3\ni: 0x1F\nj: 08.5\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"a": 384, "b": 1000, "c": 15, "d": 5, "e": 9, "f": -8, "g": "0600", "h": "1.2.3", "i": 31, "j": 8.5})
        );
        for word in [
            "1_0a", "0b", "0x", "_", "1e", "e5", ".", "10.0.0.1", "v1", "1:20",
        ] {
            assert_eq!(yaml11_number(word), None, "{word}");
        }
    }

    #[test]
    fn keys_become_strings_as_in_kubernetes() {
        // Even `y`, as in go-yaml v2 (the famous GitHub Actions `on:` surprise).
        let v = read("on: 1\n2: two\n'off': x\nn: z\n").unwrap();
        assert_eq!(v, json!({"true": 1, "2": "two", "off": "x", "false": "z"}));
    }

    #[test]
    fn numbers_nulls_and_duplicates() {
        let v = read("a: 1\nb: -2\nc: 1.5\nd: ~\ne: null\nf:\n").unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": -2, "c": 1.5, "d": null, "e": null, "f": null})
        );
        assert!(read("a: 1\na: 2\n").unwrap_err().contains("duplicate"));
        assert!(read("a: !Custom x\n").is_err());
    }
}
