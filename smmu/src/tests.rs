mod eventq;

use super::*;
use crate::model::{Fault, Smmuv3Model};
use crate::ste::Stage2;

const MEM: u64 = 0x4000_0000;
const LAYOUT: Layout = Layout {
    strtab_pa: MEM,
    strtab_log2: 4,
    cmdq_pa: MEM + 0x1000,
    cmdq_log2: 2,
    eventq_pa: MEM + 0x1800,
    eventq_log2: 3,
};
const S2: Stage2 = Stage2 {
    vmid: 1,
    ttb: 0x8000_0000,
    t0sz: 32,
    sl0: 1,
    ps: 2,
};

fn smmu() -> SecureSmmu<Smmuv3Model> {
    SecureSmmu::init(Smmuv3Model::new(8, MEM, 0x2000), LAYOUT).unwrap()
}

#[test]
fn init_leaves_every_stream_aborting() {
    let mut s = smmu();
    for sid in 0..16 {
        assert_eq!(s.bus().ste(sid), Ok(Ste::Abort));
    }
    assert_eq!(s.bus().ste(16), Err(Fault::BadStreamId(16)));
}

#[test]
fn set_ste_takes_effect_through_the_cache() {
    let mut s = smmu();
    assert_eq!(s.bus().ste(3), Ok(Ste::Abort)); // now cached
    s.set_ste(3, Ste::Stage2(S2)).unwrap();
    assert_eq!(s.bus().ste(3), Ok(Ste::Stage2(S2)));
    s.set_ste(3, Ste::Abort).unwrap();
    assert_eq!(s.bus().ste(3), Ok(Ste::Abort));
}

#[test]
fn forgetting_cfgi_keeps_the_stale_ste() {
    let mut s = smmu();
    s.set_ste(5, Ste::Bypass).unwrap();
    assert_eq!(s.bus().ste(5), Ok(Ste::Bypass));
    // Rewrite the table entry behind the SMMU's back: the cached STE stays in force.
    for (i, w) in Ste::Abort.encode().iter().enumerate() {
        assert!(s.bus().mem_write_u64(MEM + 5 * 64 + 8 * i as u64, *w));
    }
    assert_eq!(s.bus().ste(5), Ok(Ste::Bypass));
    s.submit(&[Command::CfgiSte {
        sid: 5,
        secure: true,
        leaf: true,
    }])
    .unwrap();
    assert_eq!(s.bus().ste(5), Ok(Ste::Abort));
}

#[test]
fn queue_wraps_many_times() {
    let mut s = smmu(); // 4-entry queue
    for vmid in 0..50 {
        s.submit(&[Command::TlbiS12Vmall { vmid }, Command::TlbiNsnhAll])
            .unwrap();
    }
    let tlbis = s
        .bus()
        .executed
        .iter()
        .filter(|c| matches!(c, Command::TlbiS12Vmall { .. }))
        .count();
    assert_eq!(tlbis, 50);
}

/// A bus that slips one illegal entry into the queue in place of the next command written.
struct Corrupting {
    model: Smmuv3Model,
    corrupt_next: bool,
}

impl Bus for Corrupting {
    fn read32(&mut self, o: usize) -> u32 {
        self.model.read32(o)
    }
    fn write32(&mut self, o: usize, v: u32) {
        self.model.write32(o, v)
    }
    fn write64(&mut self, o: usize, v: u64) {
        self.model.write64(o, v)
    }
    fn mem_write_u64(&mut self, pa: u64, v: u64) -> bool {
        let in_cmdq = (LAYOUT.cmdq_pa..LAYOUT.cmdq_pa + 64).contains(&pa) && pa.is_multiple_of(16);
        if in_cmdq && self.corrupt_next {
            self.corrupt_next = false;
            return self.model.mem_write_u64(pa, 0x7f); // no such opcode
        }
        self.model.mem_write_u64(pa, v)
    }
    fn mem_read_u64(&mut self, pa: u64) -> Option<u64> {
        self.model.mem_read_u64(pa)
    }
}

#[test]
fn illegal_command_is_reported_and_the_queue_recovers() {
    let bus = Corrupting {
        model: Smmuv3Model::new(8, MEM, 0x2000),
        corrupt_next: false,
    };
    let mut s = SecureSmmu::init(bus, LAYOUT).unwrap();
    s.bus().corrupt_next = true;
    assert_eq!(
        s.submit(&[
            Command::TlbiNsnhAll,
            Command::CfgiSte {
                sid: 2,
                secure: true,
                leaf: true
            }
        ]),
        Err(Error::CommandRejected(CmdqError::Illegal))
    );
    // The command after the bad one ran, and the queue keeps working.
    assert!(s.bus().model.executed.contains(&Command::CfgiSte {
        sid: 2,
        secure: true,
        leaf: true
    }));
    s.set_ste(2, Ste::Bypass).unwrap();
    assert_eq!(s.bus().model.ste(2), Ok(Ste::Bypass));
}

#[test]
fn bad_inputs_are_errors() {
    let mut s = smmu();
    assert_eq!(s.set_ste(16, Ste::Bypass), Err(Error::BadStreamId(16)));
    let mut no_secure = Smmuv3Model::new(8, MEM, 0x2000);
    no_secure.idr1 = 0;
    assert_eq!(
        SecureSmmu::init(no_secure, LAYOUT).err(),
        Some(Error::NoSecureSide)
    );
    let too_many = Layout {
        strtab_log2: 9,
        ..LAYOUT
    };
    assert_eq!(
        SecureSmmu::init(Smmuv3Model::new(8, MEM, 0x2000), too_many).err(),
        Some(Error::BadLayout)
    );
    let outside = Layout {
        strtab_pa: MEM + 0x10_0000,
        ..LAYOUT
    };
    assert_eq!(
        SecureSmmu::init(Smmuv3Model::new(8, MEM, 0x2000), outside).err(),
        Some(Error::BadMemory)
    );
}

/// Table pages for stage-2 from the model's memory above the stream table and queues.
pub(super) struct ModelTables<'a, M: crate::model::Memory> {
    pub model: &'a mut Smmuv3Model<M>,
    pub next: u64,
}

impl<M: crate::model::Memory> crate::s2::TableMemory for ModelTables<'_, M> {
    fn alloc_page(&mut self) -> Option<u64> {
        self.next += 0x1000;
        Some(self.next - 0x1000)
    }
    fn read_u64(&mut self, pa: u64) -> Option<u64> {
        self.model.mem_read_u64(pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        self.model.memory().write_u64(pa, v)
    }
}

/// The NPU's secure stream translates through the tables the driver built, only where they
/// map; switched to abort, it reaches nothing.
#[test]
fn the_secure_stream_translates_only_what_its_tables_map() {
    use crate::s2::{Access, S2Tables, WalkFault};
    let mut s = SecureSmmu::init(Smmuv3Model::new(8, MEM, 0x10000), LAYOUT).unwrap();
    let mut mem = ModelTables {
        model: s.bus(),
        next: MEM + 0x4000,
    };
    let mut t = S2Tables::new(&mut mem).unwrap();
    let rw = Access {
        read: true,
        write: true,
    };
    t.map(&mut mem, 0x1000_0000, 0x6000_0000, rw).unwrap();
    s.set_ste(5, Ste::Stage2(t.stage2(1))).unwrap();
    assert_eq!(s.bus().translate(5, 0x1000_0010, true), Ok(0x6000_0010));
    assert_eq!(
        s.bus().translate(5, 0x1000_1000, false),
        Err(Fault::Walk(WalkFault::Translation {
            iova: 0x1000_1000,
            level: 3
        }))
    );
    assert_eq!(s.bus().translate(4, 0x1000_0010, false), Err(Fault::Abort));
    s.set_ste(5, Ste::Abort).unwrap();
    assert_eq!(s.bus().translate(5, 0x1000_0010, false), Err(Fault::Abort));
    s.set_ste(5, Ste::Bypass).unwrap();
    assert_eq!(s.bus().translate(5, 0x1234, false), Ok(0x1234));
}
