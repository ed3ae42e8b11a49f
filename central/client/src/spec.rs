//! Reading YAML files into model types, with errors that name the file and the field.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::CliError;
pub use meridian_common::yaml::{MAX_FLOW_DEPTH, parse};

/// Largest spec file accepted.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

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

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::WorkloadSpec;
    use meridian_common::yaml::check_flow_depth;

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
