use meridian_common::model::{GpuSlot, PoolAssignment};

use super::*;

fn intent(site: &str, generation: u64) -> SiteIntent {
    SiteIntent::empty(site.parse().unwrap(), Generation::new(generation))
}

#[test]
fn modes() {
    use WorkloadKind::*;
    let table = [
        (BareMetal, AllocationMode::BareMetal),
        (VirtualMachine, AllocationMode::VirtualMachine),
        (InferenceEndpoint, AllocationMode::Container),
        (KubernetesCluster, AllocationMode::Container),
        (BatchJob, AllocationMode::Container),
        (RanFunction, AllocationMode::Container),
    ];
    for (kind, mode) in table {
        assert_eq!(mode_of(kind), mode, "{kind:?}");
    }
}

#[test]
fn content_ignores_generation_only() {
    let a = intent("fra-1", 1);
    let mut b = intent("fra-1", 9);
    assert!(same_content(&a, &b));
    assert!(is_empty(&a));
    b.pools.push(PoolAssignment {
        server: "srv-1".parse().unwrap(),
        pool: "default".parse().unwrap(),
    });
    assert!(!same_content(&a, &b) && !is_empty(&b));
    assert!(!same_content(&a, &intent("par-1", 1)));
}

#[test]
fn allocation_order_is_total() {
    let alloc = |server: &str, slot: GpuSlot| Allocation {
        address: None,
        workload: "w".parse().unwrap(),
        tenant: "t".parse().unwrap(),
        server: server.parse().unwrap(),
        slot,
        mode: AllocationMode::Container,
        image: None,
        window: None,
    };
    let mut v = [
        alloc("b", GpuSlot::None),
        alloc("a", GpuSlot::WholeGpus { indices: vec![1] }),
        alloc("a", GpuSlot::WholeGpus { indices: vec![0] }),
    ];
    v.sort_by(|x, y| alloc_key(x).cmp(&alloc_key(y)));
    let servers: Vec<_> = v
        .iter()
        .map(|a| (a.server.to_string(), a.slot.gpu_indices()))
        .collect();
    assert_eq!(
        servers,
        [
            ("a".into(), vec![0]),
            ("a".into(), vec![1]),
            ("b".into(), vec![])
        ]
    );
}
