//! YAML text into model types, with errors that name the field path: one parser for the CLI's
//! spec files and the console's forms.

use serde::de::DeserializeOwned;

/// Deepest nesting of flow collections (`[...]`, `{...}`) accepted. The YAML scanner's work
/// per token grows with the flow depth, so 100,000 nested `[` took minutes to refuse (found
/// by the R10 fuzzer); real specs nest a few levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Parses YAML text into `T`; the error names the field path and the line.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    defaults: &[(&str, serde_json::Value)],
) -> Result<T, String> {
    check_flow_depth(text)?;
    // Read as YAML's own values first: a repeated key is refused rather than the last one
    // winning, and a non-finite float (`.nan`, `.inf`) is named as given, where JSON's
    // values would have turned it into null.
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    non_finite(&yaml, &mut String::new())?;
    let mut value: serde_json::Value =
        serde_json::to_value(&yaml).map_err(|e| format!("not valid YAML: {e}"))?;
    match value.as_object_mut() {
        Some(map) => {
            for (key, default) in defaults {
                map.entry(*key).or_insert_with(|| default.clone());
            }
        }
        None => return Err("expected a mapping of fields at the top level".into()),
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// Refuses a float that is not a number or is infinite, naming where it is and what it is.
fn non_finite(value: &serde_yaml_ng::Value, path: &mut String) -> Result<(), String> {
    use serde_yaml_ng::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if !f.is_finite() => {
                let at = if path.is_empty() { "." } else { path.as_str() };
                Err(format!("{at}: {n} is not a finite number"))
            }
            _ => Ok(()),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                non_finite(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Mapping(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match key {
                    Value::String(k) => path.push_str(k),
                    other => path.push_str(&format!("{other:?}")),
                }
                non_finite(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Tagged(tagged) => non_finite(&tagged.value, path),
        _ => Ok(()),
    }
}

/// Refuses flow collections nested deeper than [`MAX_FLOW_DEPTH`], before the YAML scanner
/// sees them. Follows YAML's lexical rules where they decide what is structure: a quote
/// starts a quoted scalar only at the start of a token, `#` starts a comment only after
/// whitespace, and brackets inside either are text.
pub fn check_flow_depth(text: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum In {
        Structure,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Structure;
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let token_start = prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':');
        match state {
            In::Comment if c == '\n' => state = In::Structure,
            In::Comment => {}
            In::Double if c == '\\' => {
                // An escape: the next character is text (a newline still counts as a line).
                if chars.next() == Some('\n') {
                    line += 1;
                }
                prev = 'x';
                continue;
            }
            In::Double if c == '"' => state = In::Structure,
            In::Single if c == '\'' && chars.peek() == Some(&'\'') => {
                chars.next();
                prev = 'x';
                continue;
            }
            In::Single if c == '\'' => state = In::Structure,
            In::Double | In::Single => {}
            In::Structure => match c {
                '"' if token_start => state = In::Double,
                '\'' if token_start => state = In::Single,
                '#' if prev.is_whitespace() => state = In::Comment,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(format!(
                            "not valid YAML: collections nested deeper than {MAX_FLOW_DEPTH} levels at line {line}"
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        if c == '\n' {
            line += 1;
        }
        prev = c;
    }
    Ok(())
}
