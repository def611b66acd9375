//! Circular queue indices as SMMUv3 encodes them (IHI 0070 sec. 3.5.1): an index of
//! `log2size` bits plus one wrap bit above it, so "full" and "empty" differ by the wrap bit.

/// One queue's geometry: `1 << log2size` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    log2size: u32,
}

/// The largest queue the driver builds (2^19 entries is the architectural maximum).
pub const MAX_LOG2SIZE: u32 = 19;

impl Queue {
    /// `None` for a size the architecture does not allow.
    pub fn new(log2size: u32) -> Option<Self> {
        (log2size <= MAX_LOG2SIZE).then_some(Self { log2size })
    }

    /// The queue an SMMU uses for a programmed `LOG2SIZE`: capped at the maximum, as the
    /// architecture caps it at `SMMU_IDR1.*QS`.
    pub fn capped(log2size: u32) -> Self {
        Self {
            log2size: log2size.min(MAX_LOG2SIZE),
        }
    }

    pub fn log2size(self) -> u32 {
        self.log2size
    }

    pub fn entries(self) -> u32 {
        1 << self.log2size
    }

    /// Index bits plus the wrap bit; everything above (e.g. `CONS.ERR`) is masked off.
    fn ptr_mask(self) -> u32 {
        (1 << (self.log2size + 1)) - 1
    }

    /// The slot a pointer designates.
    pub fn slot(self, ptr: u32) -> u32 {
        ptr & (self.entries() - 1)
    }

    /// The pointer after `ptr`, wrapping and toggling the wrap bit at the end.
    pub fn next(self, ptr: u32) -> u32 {
        (ptr.wrapping_add(1)) & self.ptr_mask()
    }

    pub fn is_empty(self, prod: u32, cons: u32) -> bool {
        prod & self.ptr_mask() == cons & self.ptr_mask()
    }

    pub fn is_full(self, prod: u32, cons: u32) -> bool {
        let (p, c) = (prod & self.ptr_mask(), cons & self.ptr_mask());
        self.slot(p) == self.slot(c) && p != c
    }

    /// Entries produced and not yet consumed.
    pub fn used(self, prod: u32, cons: u32) -> u32 {
        (prod.wrapping_sub(cons)) & self.ptr_mask()
    }

    /// Whether `cons` has moved past the entry that was produced at `ptr`: the consumer's
    /// distance from `ptr` is at most the distance from `ptr` to `prod`.
    pub fn consumed(self, ptr: u32, prod: u32, cons: u32) -> bool {
        let m = self.ptr_mask();
        let done = cons.wrapping_sub(ptr) & m;
        let total = prod.wrapping_sub(ptr) & m;
        done >= 1 && done <= total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_bit_tells_full_from_empty() {
        let q = Queue::new(2).unwrap();
        let mut prod = 0;
        for _ in 0..4 {
            assert!(!q.is_full(prod, 0));
            prod = q.next(prod);
        }
        assert_eq!(prod, 0b100);
        assert!(q.is_full(prod, 0));
        assert!(!q.is_empty(prod, 0));
        assert_eq!(q.used(prod, 0), 4);
        let mut cons = 0;
        for _ in 0..4 {
            cons = q.next(cons);
        }
        assert!(q.is_empty(prod, cons));
        // A full lap returns to zero with the wrap bit clear.
        for _ in 0..4 {
            prod = q.next(prod);
        }
        assert_eq!(prod, 0);
    }

    #[test]
    fn err_bits_do_not_disturb_pointers() {
        let q = Queue::new(3).unwrap();
        let cons_with_err = 5 | (1 << 24);
        assert!(q.is_empty(5, cons_with_err));
        assert_eq!(q.slot(cons_with_err), 5);
    }

    #[test]
    fn rejects_oversized_queue() {
        assert!(Queue::new(MAX_LOG2SIZE + 1).is_none());
    }

    #[test]
    fn consumed_across_wrap() {
        let q = Queue::new(1).unwrap(); // 2 entries, pointers 0..=3
        // Entry produced at ptr 3 (slot 1, wrap 1); prod now 0 (after wrap).
        assert!(!q.consumed(3, 0, 3));
        assert!(q.consumed(3, 0, 0));
    }
}
