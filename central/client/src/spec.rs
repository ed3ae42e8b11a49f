//! Reading YAML files into model types, with errors that name the file and the field.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::CliError;

/// Largest spec file accepted.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Deepest nesting of flow collections (`[...]`, `{...}`) accepted. The YAML scanner's work
/// per token grows with the flow depth, so 100,000 nested `[` took minutes to refuse (found
/// by the R10 fuzzer); real specs nest a few levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Reads `path` (`-`: stdin) as YAML into `T`; `defaults` fills keys the file may leave out.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    defaults: &[(&str, serde_json::Value)],
) -> Result<T, CliError> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), MAX_FILE_BYTES + 1),
            &mut s,
        )
        .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        s
    } else {
        let len = std::fs::metadata(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(CliError::usage(format!(
                "{} is {len} bytes; a spec file may be at most {MAX_FILE_BYTES}",
                path.display()
            )));
        }
        std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?
    };
    parse(&text, defaults).map_err(|m| CliError::usage(format!("{}: {m}", path.display())))
}

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
fn check_flow_depth(text: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::WorkloadSpec;

    const GOOD: &str = "
name: llama-eu
kind: inference_endpoint
replicas: 2
resources:
  accelerator: { mig: { model: H100-80GB, profile: 3g.40gb } }
  cpu_cores: 8
  memory_mib: 65536
constraints:
  residency: [EU]
";

    #[test]
    fn a_good_spec_parses_and_bad_ones_name_the_field() {
        let spec: WorkloadSpec = parse(GOOD, &[]).unwrap();
        assert_eq!(spec.replicas, 2);
        let cases = [
            ("name: [unclosed", "not valid YAML"),
            ("- a\n- b", "mapping"),
            (
                &GOOD.replace("replicas: 2", "replicas: 2\nreplica: 3"),
                "unknown field `replica`",
            ),
            (
                &GOOD.replace("inference_endpoint", "quantum_annealer"),
                "kind",
            ),
            (&GOOD.replace("replicas: 2", "replicas: -1"), "replicas"),
            (&GOOD.replace("3g.40gb", "9g.99gb"), "resources.accelerator"),
            (
                &format!("name: {}x{}", "[".repeat(65), "]".repeat(65)),
                "nested deeper than 64 levels at line 1",
            ),
            (
                &format!("name: x\nimage: y\nexpose: {}", "[{a: ".repeat(40)),
                "nested deeper than 64 levels at line 3",
            ),
            (
                &GOOD.replace("replicas: 2", "replicas: 1\nreplicas: 2"),
                "duplicate entry with key \"replicas\"",
            ),
            (
                &GOOD.replace("cpu_cores: 8", "cpu_cores: 8\n  cpu_cores: 9"),
                "duplicate entry with key \"cpu_cores\"",
            ),
            (
                &GOOD.replace("replicas: 2", "replicas: .nan"),
                "replicas: .nan is not a finite number",
            ),
            (
                &GOOD.replace("cpu_cores: 8", "cpu_cores: -.inf"),
                "resources.cpu_cores: -.inf is not a finite number",
            ),
        ];
        for (text, expected) in cases {
            let e = parse::<WorkloadSpec>(text, &[]).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_once_and_quoted_brackets_are_text() {
        let deep = format!("name: {}x{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let e = parse::<WorkloadSpec>(&deep, &[]).unwrap_err();
        assert!(e.contains("nested deeper than 64"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Brackets in quoted scalars and comments are not structure; an apostrophe inside a
        // plain scalar does not start a quote (so it cannot hide a bomb either).
        let brackets = "[".repeat(100);
        let fine =
            format!("name: \"{brackets}\"\nimage: '{brackets} it''s'\n# {brackets}\nkind: don't");
        check_flow_depth(&fine).unwrap();
        let hidden = format!("name: don't {}", "[".repeat(65));
        assert!(check_flow_depth(&hidden).is_err());
        let escaped = format!("name: \"a\\\" {brackets}\"");
        check_flow_depth(&escaped).unwrap();
    }
}
