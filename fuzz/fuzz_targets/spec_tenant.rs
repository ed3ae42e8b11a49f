//! The CLI's spec reader (`meridian_client::spec::parse`, behind `meridian tenant create -f`)
//! on hostile text, into a `Tenant`.
//!
//! Properties checked:
//!
//! - parsing never panics, and refuses with a message;
//! - the same text parses the same way twice;
//! - a tenant that parses and validates round-trips: written back as YAML it parses to the same
//!   tenant (which still validates), and model -> protobuf (what the CLI sends) -> model gives
//!   it back unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_client::spec::{self, MAX_FILE_BYTES};
use meridian_common::model::Tenant;
use meridian_common::validate::validate_tenant;
use meridian_proto::v1 as proto;

fuzz_target!(|data: &[u8]| {
    // The CLI reads the file as UTF-8 text of at most MAX_FILE_BYTES before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() as u64 > MAX_FILE_BYTES {
        return;
    }
    let tenant = match spec::parse::<Tenant>(text, &[]) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.is_empty(), "a refusal without a message");
            return;
        }
    };
    assert_eq!(
        spec::parse::<Tenant>(text, &[]).as_ref(),
        Ok(&tenant),
        "the same text parsed differently"
    );
    if validate_tenant(&tenant).is_err() {
        return;
    }

    let yaml = serde_yaml_ng::to_string(&tenant).expect("a tenant serialises as YAML");
    let again = spec::parse::<Tenant>(&yaml, &[])
        .unwrap_or_else(|e| panic!("a valid tenant written as YAML does not parse: {e}\n{yaml}"));
    assert_eq!(
        again, tenant,
        "YAML -> tenant -> YAML -> tenant changed it:\n{yaml}"
    );
    validate_tenant(&again).expect("the tenant read back validates");

    let back = Tenant::try_from(proto::Tenant::from(tenant.clone()))
        .expect("a valid tenant converts back from protobuf");
    assert_eq!(
        back, tenant,
        "model -> protobuf -> model changed the tenant"
    );
});
