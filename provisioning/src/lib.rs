//! Zero-touch provisioning: builds the bootable ISO that carries the site agent and its
//! bootstrap file, and drives BMCs through virtual media. Reserved by the foundation; the
//! provisioning issue fills it in. Depends on `meridian-common` and `meridian-proto` among
//! Meridian's crates, never on central.
