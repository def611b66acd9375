//! The model's secure event queue (IHI 0070 sec. 7.2, 7.4; registers sec. 6.3.77-79): how a
//! record reaches queue memory, or why it does not.
//!
//! A record is delivered only while the queue is *writable* (sec. 7.2.1): `S_CR0.EVENTQEN` set,
//! the queue not full, and no unacknowledged `S_GERROR.EVENTQ_ABT_ERR`. Otherwise it is
//! dropped; only a drop because the queue is full is an overflow, and that toggles
//! `S_EVENTQ_PROD.OVFLG` unless an earlier overflow is still unacknowledged (OVFLG !=
//! `CONS.OVACKFLG`). A write that memory refuses is a synchronous external abort (sec. 7.2.2):
//! PROD does not move past the record, and `EVENTQ_ABT_ERR` is activated.

use core::ops::Range;

use super::Memory;
use crate::event::Event;
use crate::queue::Queue;
use crate::regs;

/// What became of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written at the slot PROD designated; PROD advanced.
    Written,
    /// `EVENTQEN` = 0: dropped, no overflow.
    Disabled,
    /// The queue was full: dropped, overflow flagged (if not already).
    Overflow,
    /// An earlier abort is unacknowledged: dropped.
    AbortActive,
    /// The memory refused the write: dropped, `EVENTQ_ABT_ERR` activated.
    Aborted,
}

/// The queue's registers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct EventQueue {
    pub base: u64,
    pub prod: u32,
    pub cons: u32,
}

impl EventQueue {
    /// The geometry in use: `LOG2SIZE` capped at `SMMU_IDR1.EVENTQS`.
    pub fn queue(&self, eventqs: u32) -> Queue {
        let log2 = ((self.base & regs::QBASE_LOG2SIZE_MASK) as u32).min(eventqs);
        Queue::capped(log2)
    }

    /// The queue's memory: base aligned to the larger of its size and 32 bytes.
    pub fn window(&self, eventqs: u32) -> Range<u64> {
        let bytes = regs::EVENTQ_ENTRY_BYTES << self.queue(eventqs).log2size();
        let start = self.base & regs::BASE_ADDR_MASK & !(bytes - 1);
        start..start + bytes
    }

    /// Delivers `ev` if the queue is writable. `gerror` is toggled for a new abort.
    pub fn record<M: Memory>(
        &mut self,
        mem: &mut M,
        enabled: bool,
        eventqs: u32,
        gerror: &mut u32,
        gerrorn: u32,
        ev: &Event,
    ) -> Delivery {
        if !enabled {
            return Delivery::Disabled;
        }
        if (*gerror ^ gerrorn) & regs::GERROR_EVENTQ_ABT_ERR != 0 {
            return Delivery::AbortActive;
        }
        let q = self.queue(eventqs);
        if q.is_full(self.prod, self.cons) {
            if self.prod & regs::EVENTQ_OVFLG == self.cons & regs::EVENTQ_OVFLG {
                self.prod ^= regs::EVENTQ_OVFLG;
            }
            return Delivery::Overflow;
        }
        let slot =
            self.window(eventqs).start + regs::EVENTQ_ENTRY_BYTES * u64::from(q.slot(self.prod));
        for (i, w) in ev.encode().into_iter().enumerate() {
            if !mem.write_u64(slot + 8 * i as u64, w) {
                *gerror ^= regs::GERROR_EVENTQ_ABT_ERR;
                return Delivery::Aborted;
            }
        }
        self.prod = (self.prod & regs::EVENTQ_OVFLG) | q.next(self.prod & regs::EVENTQ_PTR_MASK);
        Delivery::Written
    }
}
