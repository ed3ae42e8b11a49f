//! Entry points for raw, untyped input (strings and numbers from forms, CLI flags, protobuf).
//!
//! Each turns any input, however hostile (empty, 10 MB, control characters), into either the
//! typed value or [`Problem`]s naming the field; none panics and none echoes a long value.

use crate::gpu::{GpuModel, MigProfile};
use crate::ids::{Name, TimeWindow, Timestamp, TypedId};
use crate::jurisdiction::{ResidencyRule, shown};

use super::{Problem, ValidationError, limits};

/// Parses a [`Name`] (1 to 63 of `a-z`, `0-9`, `-`).
pub fn validate_name(field: &str, raw: &str) -> Result<Name, Problem> {
    Name::parse(raw).map_err(|e| Problem::new(field, e.to_string()))
}

/// Parses any typed ID (`parse_id::<SiteId>("site", raw)`).
pub fn parse_id<T: TypedId>(field: &str, raw: &str) -> Result<T, Problem> {
    T::parse(raw).map_err(|e| Problem::new(field, e.to_string()))
}

/// Builds a window from raw milliseconds: `end` after `start`, at most 366 days long.
pub fn validate_window(field: &str, start_ms: i64, end_ms: i64) -> Result<TimeWindow, Problem> {
    let w = TimeWindow::new(
        Timestamp::from_millis(start_ms),
        Timestamp::from_millis(end_ms),
    )
    .map_err(|e| Problem::new(format!("{field}.end"), e.to_string()))?;
    window_length(field, &w)?;
    Ok(w)
}

/// A tenant's reservation window must lie within [2000-01-01, 2100-01-01) UTC: windows at
/// the ends of the 64-bit range are typing slips or probes, and one that ends in 292 million
/// years would hold its reservation slot for ever.
pub(crate) fn window_in_range(field: &str, w: &TimeWindow) -> Result<(), Problem> {
    let (start, end) = (w.start().as_millis(), w.end().as_millis());
    if start < limits::MIN_WINDOW_START_MS {
        return Err(Problem::new(
            format!("{field}.start"),
            format!(
                "{start} is before 2000-01-01 ({} ms); give Unix milliseconds",
                limits::MIN_WINDOW_START_MS
            ),
        ));
    }
    if end > limits::MAX_WINDOW_END_MS {
        return Err(Problem::new(
            format!("{field}.end"),
            format!(
                "{end} is after 2100-01-01 ({} ms); give Unix milliseconds",
                limits::MAX_WINDOW_END_MS
            ),
        ));
    }
    Ok(())
}

pub(crate) fn window_length(field: &str, w: &TimeWindow) -> Result<(), Problem> {
    if w.duration_millis() > limits::MAX_WINDOW_MS {
        let days = w.duration_millis() / (24 * 60 * 60 * 1000);
        return Err(Problem::new(
            field,
            format!(
                "must be at most {} days long, got {days} days",
                limits::MAX_WINDOW_DAYS
            ),
        ));
    }
    Ok(())
}

/// Parses residency terms; every bad term is reported as `field[i]`.
pub fn parse_residency<S: AsRef<str>>(
    field: &str,
    terms: &[S],
) -> Result<ResidencyRule, ValidationError> {
    ResidencyRule::parse(terms).map_err(|bad| {
        ValidationError(
            bad.into_iter()
                .take(limits::MAX_PROBLEMS)
                .map(|(i, e)| Problem::new(format!("{field}[{i}]"), e.to_string()))
                .collect(),
        )
    })
}

/// Parses a MIG profile name for `model`.
pub fn parse_mig_profile(field: &str, model: GpuModel, raw: &str) -> Result<MigProfile, Problem> {
    MigProfile::parse(model, raw).map_err(|e| Problem::new(field, e.to_string()))
}

/// Checks a URL: non-empty, at most 2048 bytes, no whitespace or control characters, one of
/// `schemes`, and something after `scheme://`.
pub(crate) fn check_url(field: &str, url: &str, schemes: &[&str]) -> Result<(), Problem> {
    let allowed = || {
        let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        list.join(", ")
    };
    if url.is_empty() {
        return Err(Problem::new(
            field,
            format!("must not be empty; give a URL starting with {}", allowed()),
        ));
    }
    if url.len() > limits::MAX_URL_LEN {
        return Err(Problem::new(
            field,
            format!(
                "is {} bytes long, at most {} are allowed",
                url.len(),
                limits::MAX_URL_LEN
            ),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::new(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    let ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty());
    if !ok {
        return Err(Problem::new(
            field,
            format!(
                "{} must start with {} followed by a host",
                shown(url),
                allowed()
            ),
        ));
    }
    Ok(())
}

/// Checks short free text (serials, models): 1 to `max` bytes, no control characters.
pub(crate) fn check_text(field: &str, text: &str, max: usize) -> Result<(), Problem> {
    if text.is_empty() {
        return Err(Problem::new(field, "must not be empty"));
    }
    if text.len() > max {
        return Err(Problem::new(
            field,
            format!("is {} bytes long, at most {max} are allowed", text.len()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Problem::new(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SiteId;

    #[test]
    fn hostile_names() {
        let huge = "a".repeat(10 * 1024 * 1024);
        let cases: &[(&str, bool)] = &[
            ("web-1", true),
            ("", false),
            (&huge, false),
            ("a\u{0}b", false),
            ("a\nb", false),
            ("DROP TABLE", false),
            ("-x", false),
            ("x-", false),
        ];
        for (input, ok) in cases {
            let got = validate_name("name", input);
            assert_eq!(got.is_ok(), *ok, "{:?}", &input[..input.len().min(20)]);
            if let Err(p) = got {
                assert_eq!(p.field, "name");
                assert!(p.message.len() < 120, "{}", p.message);
            }
        }
        let p = parse_id::<SiteId>("constraints.pin_site", &huge).unwrap_err();
        assert!(p.message.contains("10485760"), "{}", p.message);
    }

    #[test]
    fn windows_from_raw() {
        assert!(validate_window("window", 0, 1).is_ok());
        assert_eq!(
            validate_window("window", 5, 5).unwrap_err().field,
            "window.end"
        );
        assert_eq!(
            validate_window("window", 5, 4).unwrap_err().field,
            "window.end"
        );
        assert_eq!(
            validate_window("window", i64::MIN, i64::MAX)
                .unwrap_err()
                .field,
            "window"
        );
        assert!(validate_window("window", 0, limits::MAX_WINDOW_MS).is_ok());
        assert!(validate_window("window", 0, limits::MAX_WINDOW_MS + 1).is_err());
    }

    #[test]
    fn residency_from_strings() {
        assert_eq!(
            parse_residency("constraints.residency", &["EU", "CH"])
                .unwrap()
                .terms
                .len(),
            2
        );
        let huge = "X".repeat(10 << 20);
        let err = parse_residency(
            "constraints.residency",
            &["EU", "ATLANTIS", "", huge.as_str(), "de"],
        )
        .unwrap_err();
        assert_eq!(
            err.fields(),
            vec![
                "constraints.residency[1]",
                "constraints.residency[2]",
                "constraints.residency[3]",
                "constraints.residency[4]"
            ]
        );
        assert!(err.to_string().len() < 1000);
    }

    #[test]
    fn mig_profiles_from_strings() {
        assert!(parse_mig_profile("p", GpuModel::H100_80GB, "3g.40gb").is_ok());
        assert!(parse_mig_profile("p", GpuModel::H100_80GB, "3g.20gb").is_err());
        assert!(parse_mig_profile("p", GpuModel::L4, "1g.10gb").is_err());
        assert!(parse_mig_profile("p", GpuModel::H100_80GB, "").is_err());
    }

    #[test]
    fn urls() {
        let s = &["https", "http", "oci"];
        assert!(check_url("image", "oci://registry/x:1", s).is_ok());
        assert!(check_url("image", "https://a/b.iso", s).is_ok());
        for bad in [
            "",
            "ftp://x",
            "https://",
            "https://a b",
            "https://a\u{7}",
            "registry/x",
        ] {
            assert!(check_url("image", bad, s).is_err(), "{bad:?}");
        }
        let long = format!("https://{}", "a".repeat(3000));
        let p = check_url("image", &long, s).unwrap_err();
        assert!(p.message.len() < 100);
    }
}
