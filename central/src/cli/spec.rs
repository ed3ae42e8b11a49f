//! Reading YAML files into model types, with errors that name the file and the field.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::CliError;

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

/// Parses YAML text into `T`; the error names the field path and the line.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    defaults: &[(&str, serde_json::Value)],
) -> Result<T, String> {
    let mut value: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
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
        ];
        for (text, expected) in cases {
            let e = parse::<WorkloadSpec>(text, &[]).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }
}
