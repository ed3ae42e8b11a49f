//! Enum values this build does not know decode without panicking: prost keeps them as `i32`.
//! Rejecting them (and `*_UNSPECIFIED`) is the conversion layer's job, so these tests pin down
//! exactly what that layer will see.

use meridian_proto::v1::{Constraints, ServerAction, Site, SiteTier, server_action};
use prost::Message;

/// A hand-made `Site` on the wire: field 3 (`tier`, varint) = `value`, then field 6
/// (`certifications`, packed repeated enum) = [1, `value`]. As a newer peer would send it.
fn site_bytes(value: u8) -> Vec<u8> {
    assert!(value < 0x80, "single-byte varint");
    vec![
        0x0a, 0x03, b'f', b'r', b'a', // 1: id = "fra"
        0x18, value, // 3: tier
        0x32, 0x02, 0x01, value, // 6: certifications, packed
    ]
}

#[test]
fn unknown_enum_values_decode_as_raw_numbers() {
    let site = Site::decode(site_bytes(99).as_slice()).expect("decodes");
    assert_eq!(site.id, "fra");
    assert_eq!(site.tier, 99, "the raw number is kept");
    assert!(
        SiteTier::try_from(site.tier).is_err(),
        "not a known SiteTier"
    );
    // prost's accessor falls back to the default (UNSPECIFIED), which conversion also rejects.
    assert_eq!(site.tier(), SiteTier::Unspecified);
    assert_eq!(site.certifications, [1, 99]);

    // Re-encoding keeps the unknown number: a relay does not corrupt it.
    let again = Site::decode(site.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(again.tier, 99);
    assert_eq!(again.certifications, [1, 99]);
}

#[test]
fn unspecified_is_zero_and_the_default() {
    let site = Site::decode(site_bytes(0).as_slice()).expect("decodes");
    assert_eq!(site.tier(), SiteTier::Unspecified);
    assert_eq!(SiteTier::Unspecified as i32, 0);
    assert_eq!(Site::default().tier(), SiteTier::Unspecified);
}

#[test]
fn unknown_values_in_optional_and_oneof_enums_decode() {
    let constraints = Constraints {
        tier: Some(1234),
        certifications: vec![-5],
        ..Constraints::default()
    };
    let decoded = Constraints::decode(constraints.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded.tier, Some(1234));
    assert_eq!(decoded.certifications, [-5]);

    let action = ServerAction {
        server: "srv-1".to_owned(),
        action: Some(server_action::Action::Power(77)),
        request: 1,
    };
    let decoded = ServerAction::decode(action.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded.action, Some(server_action::Action::Power(77)));
}

#[test]
fn unknown_fields_are_skipped() {
    // Field 15 (varint) is not in Site: a newer peer's extra field is ignored, not an error.
    let mut bytes = site_bytes(1);
    bytes.extend([0x78, 0x05]);
    let site = Site::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(site.tier(), SiteTier::Edge);
}
