//! [`ReclaimingPool`]: a worker's memory pool, which frees memory held for
//! results before it refuses a query's operator.
//!
//! A worker's results and the operators of the tasks it runs share one
//! budget: its store counts the results it keeps in memory in the same pool.
//! DataFusion's pools refuse an operator that asks for more than is left,
//! and a hash join's build side cannot spill, so a worker holding results
//! it could write to disk would fail a query that fits its limit. This pool
//! asks its [`Reclaim`] (the store) to give memory back first, then tries
//! once more.

use std::fmt;
use std::sync::{OnceLock, Weak};

use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// Memory that can be given back on demand: results that can go to disk.
pub trait Reclaim: Send + Sync {
    /// Frees `bytes` or more if it can; returns the bytes freed.
    fn reclaim(&self, bytes: usize) -> usize;
}

/// A [`FairSpillPool`] of `limit` bytes that, before refusing a reservation,
/// has its [`Reclaim`] free what the reservation lacks: results held in
/// memory give way to the operators of the tasks running.
#[derive(Debug)]
pub struct ReclaimingPool {
    inner: FairSpillPool,
    reclaim: OnceLock<Weak<dyn Reclaim>>,
}

impl ReclaimingPool {
    /// A pool of `limit` bytes, with nothing to reclaim from yet.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: FairSpillPool::new(limit),
            reclaim: OnceLock::new(),
        }
    }

    /// Reclaims from `reclaim` from now on (once; later calls are ignored).
    /// Held weakly: what reclaims usually holds a reservation in this pool.
    pub fn reclaim_from(&self, reclaim: Weak<dyn Reclaim>) {
        let _ = self.reclaim.set(reclaim);
    }
}

impl fmt::Debug for dyn Reclaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reclaim")
    }
}

impl fmt::Display for ReclaimingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reclaiming {}", self.inner)
    }
}

impl MemoryPool for ReclaimingPool {
    fn name(&self) -> &str {
        "reclaiming"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let refused = match self.inner.try_grow(reservation, additional) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        // What the pool lacks, or all of it when it was refused for fairness
        // among spilling operators rather than for room.
        let free = match self.inner.memory_limit() {
            MemoryLimit::Finite(limit) => limit.saturating_sub(self.inner.reserved()),
            _ => 0,
        };
        let lacking = match additional.saturating_sub(free) {
            0 => additional,
            lacking => lacking,
        };
        match self.reclaim.get().and_then(Weak::upgrade) {
            Some(reclaim) if reclaim.reclaim(lacking) > 0 => {
                self.inner.try_grow(reservation, additional)
            }
            _ => Err(refused),
        }
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// Results for tests: memory held in a pool, all given back when asked.
#[cfg(test)]
pub(crate) struct HeldResults {
    reservation: parking_lot::Mutex<MemoryReservation>,
    /// How often it was asked to give memory back.
    pub asked: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl HeldResults {
    /// `bytes` held in `pool`.
    pub fn holding(pool: &std::sync::Arc<dyn MemoryPool>, bytes: usize) -> std::sync::Arc<Self> {
        let reservation = MemoryConsumer::new("results").register(pool);
        reservation.grow(bytes);
        std::sync::Arc::new(Self {
            reservation: parking_lot::Mutex::new(reservation),
            asked: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

#[cfg(test)]
impl Reclaim for HeldResults {
    fn reclaim(&self, _bytes: usize) -> usize {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reservation = self.reservation.lock();
        let freed = reservation.size();
        reservation.free();
        freed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn a_reservation_that_does_not_fit_makes_results_give_memory_back() {
        let pool: Arc<dyn MemoryPool> = Arc::new(ReclaimingPool::new(1000));
        let results = HeldResults::holding(&pool, 800);
        let join = MemoryConsumer::new("join").register(&pool);

        // Nothing to reclaim from yet: refused.
        assert!(join.try_grow(500).is_err());

        let reclaim: Arc<dyn Reclaim> = Arc::clone(&results) as _;
        pool.downcast_ref::<ReclaimingPool>()
            .expect("a reclaiming pool")
            .reclaim_from(Arc::downgrade(&reclaim));
        join.try_grow(100).expect("fits without reclaiming");
        assert_eq!(results.asked.load(Ordering::SeqCst), 0);
        join.try_grow(500).expect("fits once the results are freed");
        assert_eq!(results.asked.load(Ordering::SeqCst), 1);
        assert_eq!(pool.reserved(), 600);
        // Past the limit with nothing left to free: refused.
        assert!(join.try_grow(500).is_err());
    }
}
