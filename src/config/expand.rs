//! `${VAR}` expansion from the environment, applied to the config text before parsing.
//!
//! Values are escaped for a TOML basic string, so `${VAR}` belongs inside double quotes.
//! Comment lines are left alone.

use super::ConfigError;

/// Expands every `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) with `lookup(NAME)`.
pub fn expand(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError::at(
                    file,
                    i + 1,
                    "unclosed ${ in an environment reference",
                ));
            };
            let name = &after[..end];
            let valid = name
                .chars()
                .enumerate()
                .all(|(j, c)| c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit()));
            if name.is_empty() || !valid {
                return Err(ConfigError::at(
                    file,
                    i + 1,
                    format!("${{{name}}} is not a valid environment variable reference"),
                ));
            }
            let value = lookup(name).ok_or_else(|| {
                ConfigError::at(
                    file,
                    i + 1,
                    format!("environment variable {name} is not set"),
                )
            })?;
            escape_into(&value, &mut out);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("abc".into()),
            "QUOTE" => Some("a\"b\\c\nd".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_escapes() {
        let out = expand("f", "a = \"${KEY}-${QUOTE}\"\n# ${MISSING}\n", &env).expect("expand");
        assert_eq!(out, "a = \"abc-a\\\"b\\\\c\\nd\"\n# ${MISSING}\n");
        let parsed: toml::Table = toml::from_str(&out).expect("valid toml");
        assert_eq!(parsed["a"].as_str(), Some("abc-a\"b\\c\nd"));
    }

    #[test]
    fn names_the_missing_variable_and_line() {
        let err = expand("f.toml", "x = 1\ny = \"${NOPE}\"\n", &env).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "f.toml:2: environment variable NOPE is not set"
        );
        assert!(expand("f", "y = \"${1A}\"", &env).is_err());
        assert!(expand("f", "y = \"${KEY\"", &env).is_err());
    }
}
