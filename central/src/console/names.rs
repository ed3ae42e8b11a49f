//! Display names of model enums: their serde (snake_case) names, as the API and CLI show them.

use serde::Serialize;

/// The snake_case name of a unit variant (or the variant's name of one with fields).
pub fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A timestamp as UTC text, `2026-12-07 19:25:50 UTC` (`-` for none).
pub fn time(t: meridian_common::ids::Timestamp) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    if t.as_millis() == 0 {
        return "-".to_owned();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_millis()) * 1_000_000)
        .ok()
        .and_then(|d| d.format(FORMAT).ok())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::{SiteState, SiteTier};

    #[test]
    fn enums_show_as_the_api_names_them() {
        assert_eq!(name(&SiteState::Disconnected), "disconnected");
        assert_eq!(name(&SiteTier::Edge), "edge");
        let t = meridian_common::ids::Timestamp::from_millis(1_796_671_979_272);
        assert_eq!(time(t), "2026-12-07 19:32:59 UTC");
        assert_eq!(time(meridian_common::ids::Timestamp::from_millis(0)), "-");
    }
}
