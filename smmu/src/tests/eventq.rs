//! The secure event queue and GERROR, model and driver together: each fault the NPU's stream
//! can meet records the event sec. 7.3 specifies, the queue behaves as sec. 7.2 and 7.4 say
//! (wrap, overflow, disabled), and GERROR follows the GERRORN handshake (sec. 7.5).

use alloc::vec::Vec;

use super::{LAYOUT, MEM, ModelTables};
use crate::event::{AccessAttrs, Class, Event, RecordError, Stream, TranslationFault};
use crate::model::{Delivery, Fault, Memory, Smmuv3Model, Transaction, VecMemory};
use crate::regs;
use crate::s2::{Access, S2Tables, WalkFault};
use crate::ste::Ste;
use crate::{Bus, Drained, Error, Layout, SecureSmmu};

/// The NPU-like stream the tests drive.
const SID: u32 = 5;
const RW_IOVA: u64 = 0x1000_0000;
const RO_IOVA: u64 = 0x1000_1000;
const HOLE_IOVA: u64 = 0x1000_2000;
/// Mapped to a page above 4 GiB (out of range for a 32-bit `S2PS`).
const HIGH_IOVA: u64 = 0x1000_3000;

/// Model memory whose writes can be made to fail (an interconnect that aborts them).
struct Flaky {
    mem: VecMemory,
    refuse_writes: bool,
}

impl Memory for Flaky {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        self.mem.read_u64(pa)
    }
    fn write_u64(&mut self, pa: u64, value: u64) -> bool {
        !self.refuse_writes && self.mem.write_u64(pa, value)
    }
}

type Model = Smmuv3Model<Flaky>;

fn model() -> Model {
    Smmuv3Model::with_memory(
        8,
        Flaky {
            mem: VecMemory::new(MEM, 0x10000),
            refuse_writes: false,
        },
    )
}

/// A driver whose stream `SID` translates `RW_IOVA` read/write and `RO_IOVA` read-only
/// (stage 2), nothing else.
fn rig_with(layout: Layout, m: Model) -> SecureSmmu<Model> {
    let mut s = SecureSmmu::init(m, layout).unwrap();
    let mut pages = ModelTables {
        model: s.bus(),
        next: MEM + 0x4000,
    };
    let mut t = S2Tables::new(&mut pages).unwrap();
    let rw = Access {
        read: true,
        write: true,
    };
    let ro = Access {
        read: true,
        write: false,
    };
    t.map(&mut pages, RW_IOVA, 0x6000_0000, rw).unwrap();
    t.map(&mut pages, RO_IOVA, 0x6000_1000, ro).unwrap();
    t.map(&mut pages, HIGH_IOVA, 0x1_0000_0000, rw).unwrap();
    s.set_ste(SID, Ste::Stage2(t.stage2(1))).unwrap();
    s
}

fn rig() -> SecureSmmu<Model> {
    rig_with(LAYOUT, model())
}

fn drain(s: &mut SecureSmmu<Model>) -> (Vec<crate::event::Record>, Drained) {
    s.events().unwrap()
}

fn stage2_fault(iova: u64, read: bool) -> TranslationFault {
    TranslationFault {
        stream: Stream {
            sid: SID,
            ssid: None,
        },
        attrs: AccessAttrs {
            read,
            ..AccessAttrs::default()
        },
        stage2: true,
        class: Class::Input,
        input_addr: iova,
        ipa: Some(iova & !0xfff),
    }
}

#[test]
fn a_translation_fault_records_exactly_one_f_translation() {
    let mut s = rig();
    assert_eq!(
        s.bus().translate(SID, RW_IOVA + 0x10, true),
        Ok(0x6000_0010)
    );
    assert!(drain(&mut s).0.is_empty()); // a translated access records nothing
    assert!(s.bus().translate(SID, HOLE_IOVA + 0x24, false).is_err());
    // The record in queue memory, word by word (slot 0: S_EVENTQ_PROD was 0).
    let raw: Vec<u64> = (0..4)
        .map(|i| s.bus().mem_read_u64(LAYOUT.eventq_pa + 8 * i).unwrap())
        .collect();
    assert_eq!(raw[0], (u64::from(SID) << 32) | 0x10);
    assert_eq!(raw[2], HOLE_IOVA + 0x24);
    assert_eq!(s.bus().read32(regs::S_EVENTQ_PROD), 1);
    let (records, d) = drain(&mut s);
    assert_eq!(
        records,
        [Ok(Event::Translation(stage2_fault(HOLE_IOVA + 0x24, true)))]
    );
    assert_eq!(
        d,
        Drained {
            records: 1,
            overflowed: false,
            write_aborted: false
        }
    );
    assert_eq!(s.bus().read32(regs::S_EVENTQ_CONS), 1);
    assert!(drain(&mut s).0.is_empty());
}

#[test]
fn a_write_to_a_read_only_page_records_f_permission() {
    let mut s = rig();
    assert_eq!(s.bus().translate(SID, RO_IOVA + 8, false), Ok(0x6000_1008));
    assert_eq!(
        s.bus().translate(SID, RO_IOVA + 8, true),
        Err(Fault::Walk(WalkFault::Permission {
            iova: RO_IOVA + 8,
            write: true
        }))
    );
    assert_eq!(
        drain(&mut s).0,
        [Ok(Event::Permission(stage2_fault(RO_IOVA + 8, false)))]
    );
}

#[test]
fn bad_stream_ids_record_c_bad_streamid_only_with_recinvsid() {
    let mut s = rig(); // init sets S_CR2.RECINVSID
    assert_eq!(
        s.bus().translate(200, 0, false),
        Err(Fault::BadStreamId(200))
    );
    let bad = Stream {
        sid: 200,
        ssid: None,
    };
    assert_eq!(drain(&mut s).0, [Ok(Event::BadStreamId(bad))]);
    // Without RECINVSID (written while SMMUEN = 0) the same transaction aborts silently.
    let mut m = model();
    m.write64(regs::S_STRTAB_BASE, MEM);
    m.write32(regs::S_STRTAB_BASE_CFG, 4);
    m.write64(regs::S_EVENTQ_BASE, LAYOUT.eventq_pa | 3);
    m.write32(regs::S_CR0, regs::CR0_EVENTQEN | regs::CR0_SMMUEN);
    assert_eq!(m.translate(200, 0, false), Err(Fault::BadStreamId(200)));
    assert_eq!(m.read32(regs::S_EVENTQ_PROD), 0);
    assert_eq!(m.last_delivery, None);
}

#[test]
fn configuration_errors_record_their_events() {
    let mut s = rig();
    let stream = Stream { sid: 7, ssid: None };
    // V = 0: C_BAD_STE.
    s.set_ste(7, Ste::Invalid).unwrap();
    assert_eq!(s.bus().translate(7, 0, false), Err(Fault::SteInvalid));
    // Config abort: terminated without an event (sec. 7.3.7).
    s.set_ste(7, Ste::Abort).unwrap();
    assert_eq!(s.bus().translate(7, 0, false), Err(Fault::Abort));
    // A SubstreamID on a stage-2-only stream: C_BAD_SUBSTREAMID.
    let with_ssid = Transaction {
        ssid: Some(3),
        ..Transaction::data(SID, RW_IOVA, false)
    };
    assert_eq!(
        s.bus().translate_txn(with_ssid),
        Err(Fault::BadSubstreamId(3))
    );
    // Above the 48-bit IAS with stage 1 bypassed: a stage-1 F_ADDR_SIZE.
    let high = 1u64 << 48;
    assert_eq!(
        s.bus().translate(SID, high, true),
        Err(Fault::AddressSize { iova: high })
    );
    // Beyond S2T0SZ (32 bits) but inside the IAS: a stage-2 F_TRANSLATION.
    assert!(s.bus().translate(SID, 1 << 33, false).is_err());
    let (records, _) = drain(&mut s);
    assert_eq!(
        records,
        [
            Ok(Event::BadSte(stream)),
            Ok(Event::BadSubstreamId { sid: SID, ssid: 3 }),
            Ok(Event::AddressSize(TranslationFault {
                attrs: AccessAttrs::default(),
                stage2: false,
                ipa: None,
                ..stage2_fault(high, false)
            })),
            Ok(Event::Translation(stage2_fault(1 << 33, true))),
        ]
    );
}

#[test]
fn an_output_beyond_s2ps_records_a_stage2_f_addr_size() {
    let mut s = rig();
    assert_eq!(s.bus().translate(SID, HIGH_IOVA, true), Ok(0x1_0000_0000));
    let Ok(Ste::Stage2(wide)) = s.bus().ste(SID) else {
        panic!("no stage-2 STE");
    };
    s.set_ste(SID, Ste::Stage2(crate::ste::Stage2 { ps: 0, ..wide }))
        .unwrap();
    assert_eq!(
        s.bus().translate(SID, HIGH_IOVA + 4, false),
        Err(Fault::Walk(WalkFault::OutputSize {
            iova: HIGH_IOVA + 4,
            level: 3
        }))
    );
    assert_eq!(
        drain(&mut s).0,
        [Ok(Event::AddressSize(stage2_fault(HIGH_IOVA + 4, true)))]
    );
}

#[test]
fn fetch_aborts_record_f_ste_fetch_and_f_walk_eabt() {
    let mut s = rig();
    // A stage-2 table pointer outside memory: the walk's first fetch aborts.
    let mut stage2 = match s.bus().ste(SID) {
        Ok(Ste::Stage2(s2)) => s2,
        other => panic!("{other:?}"),
    };
    stage2.ttb = 0x7000_0000;
    s.set_ste(9, Ste::Stage2(stage2)).unwrap();
    let Err(Fault::Walk(WalkFault::External { pa })) = s.bus().translate(9, 0x1000, false) else {
        panic!("walk did not abort");
    };
    // The stream table moved outside memory (behind the driver's back): the STE fetch aborts.
    s.bus().write64(regs::S_STRTAB_BASE, MEM + 0x10_0000);
    s.submit(&[crate::cmd::Command::CfgiAll]).unwrap();
    let ste_pa = MEM + 0x10_0000 + 2 * 64;
    assert_eq!(
        s.bus().translate(2, 0, false),
        Err(Fault::SteFetch { pa: ste_pa })
    );
    let (records, _) = drain(&mut s);
    assert_eq!(
        records,
        [
            Ok(Event::WalkAbort {
                fault: TranslationFault {
                    stream: Stream { sid: 9, ssid: None },
                    ipa: None,
                    ..stage2_fault(0x1000, true)
                },
                fetch_addr: pa,
            }),
            Ok(Event::SteFetch {
                stream: Stream { sid: 2, ssid: None },
                fetch_addr: ste_pa,
            }),
        ]
    );
}

#[test]
fn a_full_queue_drops_and_flags_overflow_once() {
    let mut s = rig(); // 8 entries
    for i in 0..8 {
        assert!(s.bus().translate(SID, HOLE_IOVA + i, false).is_err());
    }
    let prod = s.bus().read32(regs::S_EVENTQ_PROD);
    assert_eq!(prod, 0b1000); // full: wrap bit set, index back at 0
    for i in 0..3 {
        assert!(s.bus().translate(SID, HOLE_IOVA + 100 + i, false).is_err());
        assert_eq!(
            s.bus().last_delivery.map(|(_, d)| d),
            Some(Delivery::Overflow)
        );
    }
    // Toggled once, not per dropped record; the index did not move.
    assert_eq!(
        s.bus().read32(regs::S_EVENTQ_PROD),
        prod | regs::EVENTQ_OVFLG
    );
    let (records, d) = drain(&mut s);
    assert!(d.overflowed);
    assert_eq!(records.len(), 8);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            *r,
            Ok(Event::Translation(stage2_fault(HOLE_IOVA + i as u64, true)))
        );
    }
    // Acknowledged: CONS.OVACKFLG = PROD.OVFLG, and the next drain reports no overflow.
    assert_eq!(
        s.bus().read32(regs::S_EVENTQ_CONS),
        0b1000 | regs::EVENTQ_OVFLG
    );
    assert!(s.bus().translate(SID, HOLE_IOVA, false).is_err());
    let (records, d) = drain(&mut s);
    assert_eq!((records.len(), d.overflowed), (1, false));
    // A second overflow is reported again (OVFLG toggles back).
    for _ in 0..9 {
        let _ = s.bus().translate(SID, HOLE_IOVA, false);
    }
    assert_eq!(s.bus().read32(regs::S_EVENTQ_PROD) & regs::EVENTQ_OVFLG, 0);
    assert!(drain(&mut s).1.overflowed);
}

#[test]
fn a_disabled_queue_records_nothing_and_does_not_overflow() {
    let mut s = rig();
    let on = regs::CR0_CMDQEN | regs::CR0_SMMUEN;
    s.bus().write32(regs::S_CR0, on); // EVENTQEN = 0
    for i in 0..20 {
        assert!(s.bus().translate(SID, HOLE_IOVA + i, false).is_err());
    }
    assert_eq!(
        s.bus().last_delivery.map(|(_, d)| d),
        Some(Delivery::Disabled)
    );
    assert_eq!(s.bus().read32(regs::S_EVENTQ_PROD), 0);
    assert_eq!(
        (0..32).find_map(|i| s
            .bus()
            .mem_read_u64(LAYOUT.eventq_pa + 8 * i)
            .filter(|&w| w != 0)),
        None
    );
    assert_eq!(drain(&mut s), (Vec::new(), Drained::default()));
}

#[test]
fn the_driver_drains_across_many_wraps_and_cons_follows() {
    let mut s = rig();
    let mut seen = 0u64;
    for round in 0..40u64 {
        // 1..=8 records a round, so the pointers wrap at varying places.
        let n = round % 8 + 1;
        for i in 0..n {
            assert!(
                s.bus()
                    .translate(SID, HOLE_IOVA + 8 * (seen + i), false)
                    .is_err()
            );
        }
        let mut got = Vec::new();
        let d = s
            .drain_events(|r| {
                if let Ok(Event::Translation(f)) = r {
                    got.push(f.input_addr)
                }
            })
            .unwrap();
        let want: Vec<u64> = (seen..seen + n).map(|k| HOLE_IOVA + 8 * k).collect();
        assert_eq!((got, d.records, d.overflowed), (want, n as u32, false));
        seen += n;
        let prod = s.bus().read32(regs::S_EVENTQ_PROD);
        assert_eq!(s.bus().read32(regs::S_EVENTQ_CONS), prod);
        assert_eq!(u64::from(prod), seen % 16); // 8 entries + wrap bit
    }
}

#[test]
fn an_aborted_record_write_raises_eventq_abt_err_until_acknowledged() {
    let mut s = rig();
    assert!(s.bus().translate(SID, HOLE_IOVA, false).is_err()); // one good record first
    s.bus().memory().refuse_writes = true;
    assert!(s.bus().translate(SID, HOLE_IOVA + 1, false).is_err());
    assert_eq!(
        s.bus().last_delivery.map(|(_, d)| d),
        Some(Delivery::Aborted)
    );
    // Synchronous abort: PROD did not move past the record.
    assert_eq!(s.bus().read32(regs::S_EVENTQ_PROD), 1);
    let gerror = s.bus().read32(regs::S_GERROR);
    assert_eq!(gerror, regs::GERROR_EVENTQ_ABT_ERR);
    // Memory is fine again, but delivery stays stopped while the error is active.
    s.bus().memory().refuse_writes = false;
    assert!(s.bus().translate(SID, HOLE_IOVA + 2, false).is_err());
    assert_eq!(
        s.bus().last_delivery.map(|(_, d)| d),
        Some(Delivery::AbortActive)
    );
    let (records, d) = drain(&mut s);
    assert_eq!(records.len(), 1);
    assert!(d.write_aborted);
    // gerror() reports and acknowledges: GERRORN toggled to match, nothing active after.
    let g = s.gerror();
    assert!(g.eventq_abort() && !g.service_failure());
    assert_eq!((g.active, g.cmdq), (regs::GERROR_EVENTQ_ABT_ERR, None));
    assert_eq!(s.bus().read32(regs::S_GERRORN), gerror);
    assert!(s.gerror().is_empty());
    // Delivery resumes; a second abort toggles GERROR back (bit 2 now 0 vs GERRORN 1).
    assert!(s.bus().translate(SID, HOLE_IOVA + 3, false).is_err());
    assert_eq!(drain(&mut s).0.len(), 1);
    s.bus().memory().refuse_writes = true;
    assert!(s.bus().translate(SID, HOLE_IOVA + 4, false).is_err());
    assert_eq!(s.bus().read32(regs::S_GERROR), 0);
    assert!(s.gerror().eventq_abort());
}

#[test]
fn gerror_recovers_a_stopped_command_queue() {
    let mut s = rig();
    // An illegal command slipped in behind the driver's back: the SMMU stops on it.
    let prod = s.bus().read32(regs::S_CMDQ_PROD);
    let at = LAYOUT.cmdq_pa + 16 * u64::from(prod & 3);
    assert!(s.bus().mem_write_u64(at, 0x7f));
    assert!(s.bus().mem_write_u64(at + 8, 0));
    s.bus().write32(regs::S_CMDQ_PROD, (prod + 1) & 7);
    let g = s.gerror();
    assert_eq!(g.active, regs::GERROR_CMDQ_ERR);
    assert_eq!(g.cmdq, Some(regs::CmdqError::Illegal));
    assert!(s.gerror().is_empty());
    // The entry was replaced by a CMD_SYNC and consumed: the queue runs again.
    assert_eq!(s.bus().read32(regs::S_CMDQ_CONS), (prod + 1) & 7);
}

#[test]
fn the_queue_is_capped_at_idr1_eventqs_and_checked() {
    let mut m = model();
    m.eventqs = 1; // 2 entries, whatever the layout asks for
    let mut s = rig_with(LAYOUT, m);
    assert_eq!(s.eventq_log2(), 1);
    for i in 0..3 {
        assert!(s.bus().translate(SID, HOLE_IOVA + i, false).is_err());
    }
    let (records, d) = drain(&mut s);
    assert_eq!((records.len(), d.overflowed), (2, true));
    let misaligned = Layout {
        eventq_pa: LAYOUT.eventq_pa + 32,
        ..LAYOUT
    };
    assert_eq!(
        SecureSmmu::init(model(), misaligned).err(),
        Some(Error::BadLayout)
    );
    let outside = Layout {
        eventq_pa: MEM + 0x10_0000,
        ..LAYOUT
    };
    assert_eq!(
        SecureSmmu::init(model(), outside).err(),
        Some(Error::BadMemory)
    );
}

#[test]
fn undecodable_records_are_handed_on_and_skipped() {
    let mut s = rig();
    assert!(s.bus().translate(SID, HOLE_IOVA, false).is_err());
    // Overwrite the record with an event number the driver does not decode.
    assert!(s.bus().memory().write_u64(LAYOUT.eventq_pa, 0x09));
    assert!(s.bus().translate(SID, HOLE_IOVA + 4, false).is_err());
    let (records, d) = drain(&mut s);
    assert_eq!(d.records, 2);
    assert!(matches!(
        records[0],
        Err(RecordError::UnknownEvent { id: 0x09, .. })
    ));
    assert!(matches!(records[1], Ok(Event::Translation(_))));
}
