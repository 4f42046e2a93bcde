//! QEMU's option value syntax (QemuOpts): `key=value,key=value`, where ",,"
//! stands for a literal comma and a first element without '=' is the value
//! of the option's implied key (`-machine pc`, `-qmp unix:...`), or a
//! boolean flag set to "on" when the option has no implied key.

/// One parsed option value, keys in command-line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptValue {
    pairs: Vec<(String, String)>,
}

impl OptValue {
    /// Splits `text`; `implied_key` names the key of a leading bare element.
    pub fn parse(text: &str, implied_key: Option<&str>) -> OptValue {
        let mut pairs = Vec::new();
        for (index, element) in split_unescaped_commas(text).into_iter().enumerate() {
            if element.is_empty() {
                continue;
            }
            match element.split_once('=') {
                Some((key, value)) => pairs.push((key.to_string(), value.to_string())),
                None => match implied_key {
                    Some(key) if index == 0 => pairs.push((key.to_string(), element)),
                    // QEMU's legacy boolean shorthand: "server" = on, "nowait" = wait=off.
                    _ => match element.strip_prefix("no") {
                        Some(key) if !key.is_empty() && key != "ne" => {
                            pairs.push((key.to_string(), "off".to_string()))
                        }
                        _ => pairs.push((element, "on".to_string())),
                    },
                },
            }
        }
        OptValue { pairs }
    }

    /// The last value given for `key` (QEMU lets later ones win).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

fn split_unescaped_commas(text: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                current.push(',');
            } else {
                elements.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    elements.push(current);
    elements
}

/// QEMU's boolean spellings.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// A size with an optional binary suffix; `default_unit` applies to a bare
/// number (QEMU's -m takes MiB).
pub fn parse_size(value: &str, default_unit: u64) -> Option<u64> {
    let value = value.trim();
    let (digits, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (value, default_unit),
        Some((at, _)) => {
            let unit = match &value[at..] {
                "b" | "B" => 1,
                "k" | "K" => 1 << 10,
                "m" | "M" => 1 << 20,
                "g" | "G" => 1 << 30,
                "t" | "T" => 1 << 40,
                _ => return None,
            };
            (&value[..at], unit)
        }
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_comma_is_a_literal_comma() {
        let v = OptValue::parse("file=/img/a,,b.raw,if=ide", None);
        assert_eq!(v.get("file"), Some("/img/a,b.raw"));
        assert_eq!(v.get("if"), Some("ide"));
    }

    #[test]
    fn implied_key_only_for_the_first_element() {
        let v = OptValue::parse("xenfv,suppress-vmdesc=on", Some("type"));
        assert_eq!(v.get("type"), Some("xenfv"));
        assert_eq!(v.get("suppress-vmdesc"), Some("on"));
        let v = OptValue::parse("unix:/tmp/q.sock,server,nowait", Some("path"));
        assert_eq!(v.get("path"), Some("unix:/tmp/q.sock"));
        assert_eq!(v.get("server"), Some("on"));
        assert_eq!(v.get("wait"), Some("off"));
    }

    #[test]
    fn later_keys_win_and_values_may_hold_equals() {
        let v = OptValue::parse("a=1,a=2,b=x=y", None);
        assert_eq!(v.get("a"), Some("2"));
        assert_eq!(v.get("b"), Some("x=y"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1016", 1 << 20), Some(1016 << 20));
        assert_eq!(parse_size("2G", 1 << 20), Some(2 << 30));
        assert_eq!(parse_size("12x", 1), None);
        assert_eq!(parse_size("99999999999999999999", 1), None);
    }
}
