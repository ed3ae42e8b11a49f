//! `$metadata`: the service's CSDL document. It references the DMTF schema files (by their
//! published URIs, which validators resolve from a local copy when offline) for every
//! namespace the service's payloads use, and names the service's entity container.

use super::profile::Kind;
use super::resources::types;

/// Namespaces referenced by payloads, with their schema file: (file, namespaces to include).
fn references(kind: Kind) -> Vec<(&'static str, Vec<String>)> {
    let versioned = |ty: &str| -> Vec<String> {
        let mut parts = ty.split('.');
        let ns = parts.next().unwrap_or_default().to_owned();
        let ver = parts.next().unwrap_or_default();
        vec![ns.clone(), format!("{ns}.{ver}")]
    };
    let plain = |ns: &str| vec![ns.to_owned()];
    let mut out = vec![
        ("ServiceRoot_v1.xml", versioned(types::ROOT)),
        (
            "ComputerSystemCollection_v1.xml",
            plain("ComputerSystemCollection"),
        ),
        ("ComputerSystem_v1.xml", versioned(types::SYSTEM)),
        ("ManagerCollection_v1.xml", plain("ManagerCollection")),
        ("Manager_v1.xml", versioned(types::MANAGER)),
        ("ChassisCollection_v1.xml", plain("ChassisCollection")),
        ("Chassis_v1.xml", versioned(types::CHASSIS)),
        ("SessionService_v1.xml", versioned(types::SESSION_SERVICE)),
        ("SessionCollection_v1.xml", plain("SessionCollection")),
        ("Session_v1.xml", versioned(types::SESSION)),
        ("AccountService_v1.xml", versioned(types::ACCOUNT_SERVICE)),
        (
            "ManagerAccountCollection_v1.xml",
            plain("ManagerAccountCollection"),
        ),
        ("ManagerAccount_v1.xml", versioned(types::ACCOUNT)),
        ("RoleCollection_v1.xml", plain("RoleCollection")),
        ("Role_v1.xml", versioned(types::ROLE)),
        ("UpdateService_v1.xml", versioned(types::UPDATE_SERVICE)),
        (
            "SoftwareInventoryCollection_v1.xml",
            plain("SoftwareInventoryCollection"),
        ),
        ("SoftwareInventory_v1.xml", versioned(types::SOFTWARE)),
        ("TaskService_v1.xml", versioned(types::TASK_SERVICE)),
        ("TaskCollection_v1.xml", plain("TaskCollection")),
        ("Task_v1.xml", versioned(types::TASK)),
        ("ProcessorCollection_v1.xml", plain("ProcessorCollection")),
        ("Processor_v1.xml", versioned(types::PROCESSOR)),
        ("MemoryCollection_v1.xml", plain("MemoryCollection")),
        ("Memory_v1.xml", versioned(types::MEMORY)),
        (
            "VirtualMediaCollection_v1.xml",
            plain("VirtualMediaCollection"),
        ),
        ("VirtualMedia_v1.xml", versioned(types::VIRTUAL_MEDIA)),
        (
            "Message_v1.xml",
            vec!["Message".into(), "Message.v1_3_0".into()],
        ),
        (
            "Resource_v1.xml",
            vec!["Resource".into(), "Resource.v1_0_0".into()],
        ),
        (
            "RedfishExtensions_v1.xml",
            vec!["RedfishExtensions.v1_0_0".into()],
        ),
    ];
    if kind == Kind::Bluefield3 {
        out.push((
            "NvidiaComputerSystem_v1.xml",
            vec![
                "NvidiaComputerSystem".into(),
                "NvidiaComputerSystem.v1_6_0".into(),
            ],
        ));
        out.push((
            "NvidiaManager_v1.xml",
            vec!["NvidiaManager".into(), "NvidiaManager.v1_9_0".into()],
        ));
    }
    out
}

/// The `$metadata` document.
pub(crate) fn document(kind: Kind) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <edmx:Edmx xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\" Version=\"4.0\">\n",
    );
    for (file, namespaces) in references(kind) {
        xml.push_str(&format!(
            "  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/{file}\">\n"
        ));
        for ns in namespaces {
            if ns == "RedfishExtensions.v1_0_0" {
                xml.push_str(&format!(
                    "    <edmx:Include Namespace=\"{ns}\" Alias=\"Redfish\"/>\n"
                ));
            } else {
                xml.push_str(&format!("    <edmx:Include Namespace=\"{ns}\"/>\n"));
            }
        }
        xml.push_str("  </edmx:Reference>\n");
    }
    let root = types::ROOT.rsplit_once('.').map_or(types::ROOT, |p| p.0);
    xml.push_str(&format!(
        "  <edmx:DataServices>\n    <Schema xmlns=\"http://docs.oasis-open.org/odata/ns/edm\" Namespace=\"Service\">\n      \
         <EntityContainer Name=\"Service\" Extends=\"{root}.ServiceContainer\"/>\n    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>\n"
    ));
    xml
}
