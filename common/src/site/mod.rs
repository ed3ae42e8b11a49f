//! Sites: the model (and [`GeoPoint`]) in [`model`], the wire form in `wire.rs`, the checks in
//! `validate.rs`.

pub mod model;
pub(crate) mod validate;
mod wire;

pub use model::{Certification, GeoPoint, Site, SiteState, SiteTier};
pub use validate::validate_site;
