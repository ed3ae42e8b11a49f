//! Shared by the Redfish driver tests: the image server a BMC downloads boot media and
//! firmware from (the testkit's, one for every test that needs one).

pub use meridian_testkit::images::ImageServer as Images;
