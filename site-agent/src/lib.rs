//! The Meridian site agent: the channel client, the intent store, the reconciler and the
//! device drivers live here. The foundation only reserves the crate; the secure-channel and
//! driver issues fill it in.
