//! Every vendor difference the Redfish driver knows about, in one place.
//!
//! The driver speaks standard Redfish and consults [`Quirks`] at the few points where a known
//! BMC departs from it. Some tolerances apply to every BMC because they cost nothing when not
//! needed: an insert right after an eject is retried on 500/502/504 (a Dell eject is
//! acknowledged before it finishes), collections answering 404/405/501 make the inventory
//! partial rather than failed, and `If-Match: *` is sent when a BMC gives no ETag. The vendor is read from the service root (`Vendor`, `Oem` keys,
//! `Product`) and, failing that, from the first system's `Manufacturer`.

use serde_json::Value;

/// Who made the BMC, as far as its answers tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vendor {
    Dell,
    Hpe,
    Lenovo,
    Supermicro,
    /// NVIDIA BMCs: BlueField DPU BMCs and HGX baseboards.
    Nvidia,
    /// OpenStack sushy-tools `sushy-emulator`.
    SushyEmulator,
    /// Meridian's own emulator (`meridian-sim`).
    Meridian,
    Other(String),
    Unknown,
}

impl Vendor {
    /// Reads the vendor from the service root and, if it is silent, a system's `Manufacturer`.
    pub fn detect(root: &Value, system_manufacturer: Option<&str>) -> Vendor {
        let text = |v: &Value| v.as_str().map(str::to_ascii_lowercase);
        let mut hints: Vec<String> = Vec::new();
        hints.extend(text(&root["Vendor"]));
        hints.extend(text(&root["Product"]));
        if let Some(oem) = root["Oem"].as_object() {
            hints.extend(oem.keys().map(|k| k.to_ascii_lowercase()));
        }
        hints.extend(text(&root["Id"]));
        hints.extend(system_manufacturer.map(str::to_ascii_lowercase));
        for h in &hints {
            let v = match h.as_str() {
                h if h.contains("dell") || h.contains("idrac") => Vendor::Dell,
                h if h == "hpe" || h == "hp" || h.contains("ilo") => Vendor::Hpe,
                h if h.contains("lenovo") || h.contains("xclarity") => Vendor::Lenovo,
                h if h.contains("supermicro") => Vendor::Supermicro,
                h if h.contains("nvidia") || h.contains("bluefield") => Vendor::Nvidia,
                h if h.contains("sushy") || h == "redvirtservice" => Vendor::SushyEmulator,
                h if h.contains("meridian") => Vendor::Meridian,
                _ => continue,
            };
            return v;
        }
        match root["Vendor"].as_str() {
            Some(v) if !v.is_empty() => Vendor::Other(v.to_owned()),
            _ => Vendor::Unknown,
        }
    }

    /// The quirks of this vendor's BMCs.
    pub fn quirks(&self) -> Quirks {
        let mut q = Quirks::default();
        match self {
            Vendor::Supermicro => {
                // Some X11/X12 BMCs answer 400 PropertyValueNotInList to a mode in the same
                // PATCH as the target: send it alone, and tolerate its refusal.
                q.boot_mode_in_separate_patch = true;
            }
            Vendor::SushyEmulator => {
                // PATCH Boot answers 204 but BootSourceOverrideEnabled always reads back
                // `Continuous`; an unknown ResetType is a 501, not a 400.
                q.boot_enabled_ignored = true;
            }
            Vendor::Nvidia => {
                // BlueField BMCs take SimpleUpdate's ImageURI as `<server>/<path>` with the
                // scheme given separately in TransferProtocol.
                q.image_uri_without_scheme = true;
            }
            _ => {}
        }
        q
    }
}

/// Departures from the standard that the driver works around. All `false` means "speaks
/// Redfish as written".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Send `BootSourceOverrideMode` in its own PATCH and ignore a refusal of it.
    pub boot_mode_in_separate_patch: bool,
    /// `BootSourceOverrideEnabled` is accepted but not honoured: a mismatch on read-back is
    /// logged, not an error.
    pub boot_enabled_ignored: bool,
    /// SimpleUpdate's `ImageURI` is written without the `scheme://` prefix.
    pub image_uri_without_scheme: bool,
}

/// Systems that are not the host but carry its GPUs (NVIDIA HGX baseboards expose the GPUs
/// under a separate `HGX_*` system managed by the HMC).
pub fn is_gpu_baseboard_system(id: &str) -> bool {
    id.starts_with("HGX_")
}

/// NVIDIA's OEM sub-resource of a System or Manager when the resource does not link it
/// (`<resource>/Oem/Nvidia`, as NVIDIA documents for BlueField BMCs).
pub fn nvidia_oem_path(resource: &str) -> String {
    format!("{}/Oem/Nvidia", resource.trim_end_matches('/'))
}

/// The `ImageURI` to send for `url`: unchanged, or (BlueField) without `scheme://`.
pub fn image_uri(quirks: &Quirks, url: &str) -> String {
    if quirks.image_uri_without_scheme {
        url.split_once("://")
            .map_or(url, |(_, rest)| rest)
            .to_owned()
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_vendors() {
        assert_eq!(
            Vendor::detect(&json!({"Id": "RedvirtService"}), None),
            Vendor::SushyEmulator
        );
        assert_eq!(
            Vendor::detect(&json!({"Vendor": "Dell"}), None),
            Vendor::Dell
        );
        assert_eq!(
            Vendor::detect(&json!({"Oem": {"Supermicro": {}}}), None),
            Vendor::Supermicro
        );
        assert_eq!(
            Vendor::detect(&json!({"Id": "RootService"}), Some("NVIDIA")),
            Vendor::Nvidia
        );
        assert_eq!(
            Vendor::detect(&json!({"Vendor": "Acme"}), None),
            Vendor::Other("Acme".into())
        );
        assert_eq!(Vendor::detect(&json!({}), None), Vendor::Unknown);
    }

    #[test]
    fn image_uri_drops_the_scheme_only_when_asked() {
        let bf = Vendor::Nvidia.quirks();
        assert_eq!(
            image_uri(&bf, "http://10.1.0.5/bfb/a.bfb"),
            "10.1.0.5/bfb/a.bfb"
        );
        assert_eq!(
            image_uri(&Quirks::default(), "http://10.1.0.5/a"),
            "http://10.1.0.5/a"
        );
    }
}
