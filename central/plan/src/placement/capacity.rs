//! GPU capacity over time: every GPU keeps its bookings (half-open time windows); a GPU is
//! free for a window when no booking overlaps it.
//!
//! Whole-GPU bookings need a GPU with MIG disabled and no overlapping booking. MIG bookings
//! need a GPU with MIG enabled; the slices of every booking that overlaps the window are
//! treated as taken together (memory-slice mask and compute-slice sum), which can only
//! under-estimate free capacity, so two overlapping windows never share a slice.
//!
//! A site's storage array works the same way: every volume booked on it holds its MiB for its
//! window, and the free space for a window is the array's size less the sum of every booking
//! that overlaps the window (again together, never under-booking).

use meridian_common::ids::{ServerId, TimeWindow};
use meridian_common::model::{GpuHealth, GpuModel, MigConfig, MigProfile, MigProfileSpec, Server};

/// A half-open window in unix milliseconds; `end = i64::MAX` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    pub fn of(window: Option<&TimeWindow>, now: i64) -> Span {
        match window {
            Some(w) => Span {
                start: w.start().as_millis(),
                end: w.end().as_millis(),
            },
            None => Span {
                start: now,
                end: i64::MAX,
            },
        }
    }

    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// What a booking holds on its GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    Whole,
    Mig {
        compute: u8,
        mask: u16,
        profile: MigProfile,
        placement: u8,
    },
}

/// One booking of one GPU by one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Booking {
    /// The planner's internal number of the booking workload.
    pub owner: u32,
    pub span: Span,
    pub hold: Hold,
}

/// A GPU and its bookings.
#[derive(Debug, Clone)]
pub(crate) struct GpuCell {
    pub index: u32,
    pub model: GpuModel,
    pub mig: bool,
    pub usable: bool,
    pub bookings: Vec<Booking>,
}

impl GpuCell {
    fn overlapping<'a>(&'a self, span: &'a Span) -> impl Iterator<Item = &'a Booking> + 'a {
        self.bookings.iter().filter(move |b| b.span.overlaps(span))
    }

    /// Free as a whole GPU of `model` for `span`.
    pub fn whole_free(&self, model: GpuModel, span: &Span) -> bool {
        self.usable && !self.mig && self.model == model && self.overlapping(span).next().is_none()
    }

    /// Compute slices and memory-slice mask taken during `span`.
    pub fn mig_taken(&self, span: &Span) -> (u8, u16) {
        self.overlapping(span)
            .fold((0, 0), |(c, m), b| match b.hold {
                // Saturating: a long window can overlap hundreds of short bookings.
                Hold::Mig { compute, mask, .. } => (c.saturating_add(compute), m | mask),
                Hold::Whole => (u8::MAX, u16::MAX),
            })
    }

    /// The lowest placement where `spec` fits during `span`, with the compute slices then in
    /// use (for packing).
    pub fn mig_fit(&self, model: GpuModel, spec: &MigProfileSpec, span: &Span) -> Option<(u8, u8)> {
        if !(self.usable && self.mig && self.model == model) {
            return None;
        }
        let (compute, mask) = self.mig_taken(span);
        let total = model.mig_compute_slices();
        if compute.saturating_add(spec.compute_slices) > total {
            return None;
        }
        spec.placements
            .iter()
            .copied()
            .find(|&p| {
                mig_mask(spec, p) & mask == 0 && p + spec.memory_slices <= model.mig_memory_slices()
            })
            .map(|p| (p, compute))
    }
}

/// The memory-slice mask of `spec` at `placement`.
pub(crate) fn mig_mask(spec: &MigProfileSpec, placement: u8) -> u16 {
    (((1u32 << spec.memory_slices) - 1) << placement) as u16
}

/// One volume's booking of a site's storage array by one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StorageBooking {
    pub owner: u32,
    pub span: Span,
    pub mib: u64,
}

/// A site's storage array and its bookings.
#[derive(Debug, Clone, Default)]
pub(crate) struct StorageCell {
    /// The array's size in MiB (0: the site has no array).
    pub total: u64,
    pub bookings: Vec<StorageBooking>,
}

impl StorageCell {
    /// MiB booked by bookings that overlap `span` (all of them together).
    pub fn used(&self, span: &Span) -> u64 {
        self.bookings
            .iter()
            .filter(|b| b.span.overlaps(span))
            .fold(0u64, |sum, b| sum.saturating_add(b.mib))
    }

    /// MiB free for the whole of `span`.
    pub fn free(&self, span: &Span) -> u64 {
        self.total.saturating_sub(self.used(span))
    }

    /// Removes every booking of `owner`.
    pub fn release(&mut self, owner: u32) {
        self.bookings.retain(|b| b.owner != owner);
    }
}

/// A server and its GPUs.
#[derive(Debug, Clone)]
pub(crate) struct ServerCell {
    pub id: ServerId,
    pub site: u32,
    pub cpu_cores: u32,
    pub memory_mib: u64,
    pub gpus: Vec<GpuCell>,
    /// GPUs with at least one booking (any time), for a quick "untouched" test.
    pub booked_gpus: u16,
    /// Drained by an operator: keeps its bookings, takes no new one.
    pub drained: bool,
}

impl ServerCell {
    pub fn from_model(server: &Server, site: u32) -> ServerCell {
        let gpus = server
            .gpus
            .iter()
            .map(|g| GpuCell {
                index: g.index,
                model: g.model,
                mig: matches!(g.mig, MigConfig::Enabled { .. }),
                usable: g.health == GpuHealth::Healthy,
                bookings: Vec::new(),
            })
            .collect();
        ServerCell {
            id: server.id.clone(),
            site,
            cpu_cores: server.cpu_cores,
            memory_mib: server.memory_mib,
            gpus,
            booked_gpus: 0,
            drained: false,
        }
    }

    /// Indices (into `gpus`) of whole GPUs of `model` free for `span`, and how many of the
    /// server's `model` GPUs exist.
    pub fn whole_free(&self, model: GpuModel, span: &Span, out: &mut Vec<u16>) -> usize {
        out.clear();
        let mut total = 0;
        for (i, gpu) in self.gpus.iter().enumerate() {
            if gpu.model == model && !gpu.mig && gpu.usable {
                total += 1;
                if self.booked_gpus == 0 || gpu.whole_free(model, span) {
                    out.push(i as u16);
                }
            }
        }
        total
    }

    /// Whether every GPU is usable, of `model`, MIG-disabled and free for `span` (bare metal).
    pub fn entirely_free(&self, model: GpuModel, span: &Span) -> bool {
        !self.gpus.is_empty() && self.gpus.iter().all(|g| g.whole_free(model, span))
    }

    pub fn book(&mut self, gpu: u16, booking: Booking) {
        let cell = &mut self.gpus[gpu as usize];
        if cell.bookings.is_empty() {
            self.booked_gpus += 1;
        }
        cell.bookings.push(booking);
    }

    /// Removes every booking of `owner` from `gpu`; returns how many.
    pub fn release(&mut self, gpu: u16, owner: u32) -> usize {
        let cell = &mut self.gpus[gpu as usize];
        let before = cell.bookings.len();
        cell.bookings.retain(|b| b.owner != owner);
        let removed = before - cell.bookings.len();
        if removed > 0 && cell.bookings.is_empty() {
            self.booked_gpus -= 1;
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(model: GpuModel, mig: bool) -> GpuCell {
        GpuCell {
            index: 0,
            model,
            mig,
            usable: true,
            bookings: Vec::new(),
        }
    }

    fn span(start: i64, end: i64) -> Span {
        Span { start, end }
    }

    #[test]
    fn whole_gpu_is_free_only_outside_bookings() {
        let mut g = gpu(GpuModel::H100_80GB, false);
        g.bookings.push(Booking {
            owner: 1,
            span: span(10, 20),
            hold: Hold::Whole,
        });
        assert!(g.whole_free(GpuModel::H100_80GB, &span(0, 10)));
        assert!(g.whole_free(GpuModel::H100_80GB, &span(20, 30)));
        assert!(!g.whole_free(GpuModel::H100_80GB, &span(19, 21)));
        assert!(!g.whole_free(GpuModel::L40S, &span(0, 5)));
        assert!(!gpu(GpuModel::H100_80GB, true).whole_free(GpuModel::H100_80GB, &span(0, 5)));
    }

    #[test]
    fn mig_slices_follow_the_geometry_in_overlapping_windows() {
        let model = GpuModel::H100_80GB;
        let one = model.mig_profile("1g.10gb").unwrap();
        let three = model.mig_profile("3g.40gb").unwrap();
        let seven = model.mig_profile("7g.80gb").unwrap();
        let mut g = gpu(model, true);
        let w = span(0, 100);
        for expected in 0..7u8 {
            let (p, _) = g.mig_fit(model, one, &w).expect("a 1g.10gb slot");
            assert_eq!(p, expected);
            g.bookings.push(Booking {
                owner: u32::from(p),
                span: w,
                hold: Hold::Mig {
                    compute: 1,
                    mask: mig_mask(one, p),
                    profile: MigProfile::parse(model, "1g.10gb").unwrap(),
                    placement: p,
                },
            });
        }
        assert_eq!(
            g.mig_fit(model, one, &w),
            None,
            "an 8th 1g.10gb must not fit"
        );
        // After the window, everything is free again.
        assert_eq!(g.mig_fit(model, seven, &span(100, 200)), Some((0, 0)));
        let mut h = gpu(model, true);
        h.bookings.push(Booking {
            owner: 9,
            span: w,
            hold: Hold::Mig {
                compute: 3,
                mask: mig_mask(three, 4),
                profile: MigProfile::parse(model, "3g.40gb").unwrap(),
                placement: 4,
            },
        });
        assert_eq!(h.mig_fit(model, three, &w), Some((0, 3)));
        assert_eq!(h.mig_fit(model, seven, &w), None);
    }

    #[test]
    fn storage_counts_every_overlapping_volume_together() {
        let mut array = StorageCell {
            total: 1000,
            bookings: Vec::new(),
        };
        assert_eq!(array.free(&span(0, 10)), 1000);
        array.bookings.push(StorageBooking {
            owner: 1,
            span: span(0, 10),
            mib: 600,
        });
        array.bookings.push(StorageBooking {
            owner: 2,
            span: span(20, 30),
            mib: 300,
        });
        assert_eq!(array.free(&span(10, 20)), 1000);
        assert_eq!(
            array.free(&span(5, 25)),
            100,
            "both overlap: taken together"
        );
        array.release(1);
        assert_eq!(array.free(&span(5, 25)), 700);
        let empty = StorageCell::default();
        assert_eq!(empty.free(&span(0, 1)), 0);
    }
}
