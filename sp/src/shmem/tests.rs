use super::*;
use alloc::{collections::BTreeMap, vec};
use ffa::memory::{Emad, MemFlags, MemRegionAttributes, Shareability};

const SP: PartitionId = 0x8001;
const NW: PartitionId = 0;
const BASE: u64 = 0x4800_0000;

/// A partition manager and page table in memory: `offers` are what RETRIEVE answers per handle;
/// `mem` is normal-world memory from BASE; every map/unmap is recorded.
#[derive(Default)]
struct Fake {
    offers: BTreeMap<u64, MemTransaction>,
    retrieved: Vec<u64>,
    relinquished: Vec<u64>,
    refuse_relinquish: bool,
    /// Answer RETRIEVE_RESP, then hand the SP a response it cannot parse (held at the SPMC).
    garble_response: bool,
    /// Retrieve requests refused for their instruction access (Hafnium's rule).
    refused_forms: usize,
    /// Fail the map of the n-th range (0-based) of the next retrieve.
    fail_map_at: Option<usize>,
    maps_this_retrieve: usize,
    mapped: BTreeMap<u64, Access>,
    mem: Vec<u8>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            mem: vec![0; 64 * 4096],
            ..Default::default()
        }
    }

    fn check_mapped(&self, pa: u64, len: usize, write: bool) {
        let mut p = pa & !(PAGE - 1);
        while p < pa + len as u64 {
            let a = self
                .mapped
                .get(&p)
                .unwrap_or_else(|| panic!("{p:#x} unmapped"));
            assert!(!write || a.writable, "write to read-only {p:#x}");
            p += PAGE;
        }
    }
}

impl MemPlatform for Fake {
    fn retrieve(&mut self, req: &MemTransaction) -> Result<MemTransaction, RetrieveError> {
        let refuse = |code| RetrieveError {
            error: ffa::Error::Ffa(code),
            retrieved: false,
        };
        // The request is the form Hafnium wants: it must build, and parse back as a request
        // (a partition manager refuses what does not, e.g. the invalid handle).
        let bytes = req.to_vec(ffa::memory::DescKind::RetrieveReq).unwrap();
        ffa::memory::MemTransaction::parse(
            &bytes,
            ffa::memory::DescKind::RetrieveReq,
            Default::default(),
        )
        .map_err(|e| refuse(e.to_ffa_error()))?;
        self.maps_this_retrieve = 0;
        let t = self
            .offers
            .get(&req.handle.0)
            .cloned()
            .ok_or(refuse(FfaError::InvalidParameters))?;
        let sent = t.flags.transaction_type();
        let asked = req.flags.transaction_type();
        if asked != TransactionType::Unspecified && asked != sent {
            return Err(refuse(FfaError::InvalidParameters));
        }
        // Hafnium v2.15 `ffa_memory_retrieve_is_memory_access_valid`, one borrower.
        let ia = req.receivers[0].perm.instruction_access;
        let ia_ok = match sent {
            TransactionType::Share => ia == InstructionAccess::NotSpecified,
            _ => ia == InstructionAccess::NotExecutable,
        };
        if !ia_ok {
            self.refused_forms += 1;
            return Err(refuse(FfaError::InvalidParameters));
        }
        self.retrieved.push(req.handle.0);
        if self.garble_response {
            return Err(RetrieveError {
                error: ffa::Error::Mem(ffa::memory::MemError::ReservedNotZero { offset: 40 }),
                retrieved: true,
            });
        }
        Ok(t)
    }

    fn relinquish(&mut self, handle: Handle) -> Result<(), ffa::Error> {
        if self.refuse_relinquish {
            return Err(ffa::Error::Ffa(FfaError::Denied));
        }
        if !self.retrieved.contains(&handle.0) {
            return Err(ffa::Error::Ffa(FfaError::InvalidParameters));
        }
        self.retrieved.retain(|h| *h != handle.0);
        self.relinquished.push(handle.0);
        Ok(())
    }

    fn map(&mut self, range: Range<u64>, access: Access) -> Result<(), MapFail> {
        if self.fail_map_at == Some(self.maps_this_retrieve) {
            self.fail_map_at = None;
            return Err(MapFail::Refused);
        }
        self.maps_this_retrieve += 1;
        for p in (range.start..range.end).step_by(PAGE as usize) {
            assert!(
                self.mapped.insert(p, access).is_none(),
                "{p:#x} mapped twice"
            );
        }
        Ok(())
    }

    fn unmap(&mut self, range: Range<u64>) -> Result<(), MapFail> {
        for p in (range.start..range.end).step_by(PAGE as usize) {
            assert!(self.mapped.remove(&p).is_some(), "{p:#x} not mapped");
        }
        Ok(())
    }

    fn mapped_pages(&self) -> u64 {
        self.mapped.len() as u64
    }

    fn read(&self, pa: u64, out: &mut [u8]) {
        self.check_mapped(pa, out.len(), false);
        let o = (pa - BASE) as usize;
        out.copy_from_slice(&self.mem[o..o + out.len()]);
    }

    fn write(&mut self, pa: u64, data: &[u8]) {
        self.check_mapped(pa, data.len(), true);
        let o = (pa - BASE) as usize;
        self.mem[o..o + data.len()].copy_from_slice(data);
    }

    unsafe fn view(&self, pa: u64, len: usize) -> Option<&'static [u8]> {
        self.check_mapped(pa, len, false);
        let o = (pa - BASE) as usize;
        // A leaked snapshot: the pinned bytes cannot change anyway.
        Some(Box::leak(self.mem[o..o + len].to_vec().into_boxed_slice()))
    }
}

fn offer(handle: u64, ty: TransactionType, ranges: &[(u64, u32)]) -> MemTransaction {
    offer_at(BASE, handle, ty, ranges)
}

/// A retrieve response from the normal world for `ranges` (page index, count) above `base`, as
/// Hafnium answers; also the Flex-Mem tests' (`flexmem/tests.rs`).
pub(crate) fn offer_at(
    base: u64,
    handle: u64,
    ty: TransactionType,
    ranges: &[(u64, u32)],
) -> MemTransaction {
    MemTransaction {
        sender_id: NW,
        // As Hafnium answers: the sender's attributes + NS; a single-borrower lend or donate
        // leaves the type unspecified.
        attributes: if ty == TransactionType::Share {
            MemRegionAttributes {
                ns: true,
                ..MemRegionAttributes::NORMAL_WB_INNER
            }
        } else {
            MemRegionAttributes {
                mem_type: MemType::Unspecified,
                ns: true,
            }
        },
        flags: MemFlags(0).with_type(ty),
        handle: Handle(handle),
        tag: 0,
        emad_size: EmadSize::V1_2,
        receivers: vec![Emad::new(MemAccessPerm {
            endpoint_id: SP,
            data_access: DataAccess::ReadWrite,
            instruction_access: InstructionAccess::NotExecutable,
            non_retrieval_borrower: false,
        })],
        ranges: ranges
            .iter()
            .map(|&(p, n)| MemRange {
                address: base + p * PAGE,
                page_count: n,
            })
            .collect(),
    }
}

fn shm(offers: &[MemTransaction]) -> SharedMemory<Fake> {
    let mut f = Fake::new();
    for o in offers {
        f.offers.insert(o.handle.0, o.clone());
    }
    // The SP's own memory sits at pages 60..64 of the fake window.
    let own: Range<u64> = BASE + 60 * PAGE..BASE + 64 * PAGE;
    SharedMemory::new(f, SP, Vec::from([own]))
}

#[test]
fn retrieve_maps_checksums_fills_and_releases() {
    let mut m = shm(&[offer(7, TransactionType::Share, &[(4, 2), (1, 1)])]);
    for (i, b) in m.platform.mem.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    let info = m.retrieve(NW, 7, TransactionType::Share).unwrap();
    assert_eq!((info.pages, info.ranges), (3, 2));
    assert_eq!(
        info.flags,
        region_flags::NS | region_flags::WRITABLE | 1 << region_flags::TYPE_SHIFT
    );
    assert_eq!(m.stats().mapped_pages, 3);
    assert_eq!(
        m.platform.mapped[&(BASE + 4 * PAGE)],
        Access {
            ns: true,
            writable: true
        }
    );

    // Region bytes: pages 4, 5, then 1 of the window, in that order.
    let expect: Vec<u8> = [4u64, 5, 1]
        .iter()
        .flat_map(|p| {
            let o = (p * PAGE) as usize;
            m.platform.mem[o..o + PAGE as usize].to_vec()
        })
        .collect();
    let id = info.region;
    assert_eq!(m.checksum(id, 0, 3 * 4096), Ok(Checksum::of(&expect)));
    // A span across the range boundary.
    assert_eq!(
        m.checksum(id, 8000, 500),
        Ok(Checksum::of(&expect[8000..8500]))
    );
    m.fill(id, 8190, 10, 0x0403_0201).unwrap();
    let page1 = (PAGE) as usize;
    assert_eq!(
        m.platform.mem[(5 * PAGE) as usize + 4094],
        pattern_byte(0x0403_0201, 8190)
    );
    assert_eq!(m.platform.mem[page1], pattern_byte(0x0403_0201, 8192));
    assert_eq!(m.platform.mem[page1 + 8], expect[8200]);

    m.release(id).unwrap();
    assert_eq!(m.stats().live_regions, 0);
    assert_eq!(m.stats().mapped_pages, 0);
    assert_eq!(m.platform.relinquished, [7]);
    assert_eq!(m.checksum(id, 0, 1), Err(MemError::NoSuchRegion(id)));
    assert_eq!(m.release(id), Err(MemError::NoSuchRegion(id)));
}

#[test]
fn spans_are_checked_once_and_bounded() {
    let mut m = shm(&[offer(1, TransactionType::Lend, &[(0, 1)])]);
    let id = m
        .retrieve(NW, 1, TransactionType::Unspecified)
        .unwrap()
        .region;
    assert_eq!(m.checksum(id, 4096, 0), Ok(Checksum::new().value()));
    assert_eq!(m.checksum(id, 4096, 1), Err(MemError::OutOfBounds));
    assert_eq!(m.checksum(id, 0, 4097), Err(MemError::OutOfBounds));
    assert_eq!(
        m.checksum(id, u32::MAX, u32::MAX),
        Err(MemError::OutOfBounds)
    );
    assert_eq!(m.fill(id, 1, 4096, 0), Err(MemError::OutOfBounds));
    assert_eq!(m.fill(id + 1, 0, 1, 0), Err(MemError::NoSuchRegion(id + 1)));
}

#[test]
fn refused_regions_are_given_back() {
    use RejectReason::*;
    let mut wrong_type = offer(2, TransactionType::Lend, &[(0, 1)]);
    let mut device = offer(3, TransactionType::Share, &[(0, 1)]);
    device.attributes.mem_type = MemType::Device(ffa::memory::DeviceType::NGnRE);
    let mut nc = offer(4, TransactionType::Share, &[(0, 1)]);
    nc.attributes.mem_type = MemType::Normal {
        cacheability: Cacheability::NonCacheable,
        shareability: Shareability::Inner,
    };
    let own = offer(5, TransactionType::Share, &[(59, 2)]);
    let mut other_receiver = offer(6, TransactionType::Share, &[(0, 1)]);
    other_receiver.receivers[0].perm.endpoint_id = 0x8002;
    let mut no_access = offer(8, TransactionType::Share, &[(0, 1)]);
    no_access.receivers[0].perm.data_access = DataAccess::NotSpecified;
    let mut other_handle = offer(9, TransactionType::Share, &[(0, 1)]);
    other_handle.handle = Handle(10);
    let huge = offer(
        11,
        TransactionType::Share,
        &[(0, (MAX_REGION_PAGES + 1) as u32)],
    );
    wrong_type.handle = Handle(2);
    let mut m = shm(&[wrong_type, device, nc, own, other_receiver, no_access, huge]);
    // Asked for 9, answered about 10.
    m.platform.offers.insert(9, other_handle);
    // A lend asked for as a share: the partition manager refuses it (Hafnium: type mismatch),
    // nothing is held.
    assert_eq!(
        m.retrieve(NW, 2, TransactionType::Share),
        Err(MemError::Ffa(FfaError::InvalidParameters))
    );
    assert!(m.platform.relinquished.is_empty());
    let cases = [
        (3, TransactionType::Share, UnsupportedAttributes),
        (4, TransactionType::Unspecified, UnsupportedAttributes),
        (5, TransactionType::Share, Overlap),
        (6, TransactionType::Share, BadDescriptor),
        (8, TransactionType::Share, NoAccess),
        (9, TransactionType::Share, BadDescriptor),
        (11, TransactionType::Share, TooLarge),
    ];
    for (h, t, reason) in cases {
        assert_eq!(m.retrieve(NW, h, t), Err(MemError::Rejected(reason)), "{h}");
        // Given back at once, nothing mapped.
        assert_eq!(m.platform.relinquished.last(), Some(&h));
        assert_eq!(m.stats().mapped_pages, 0);
        assert_eq!(m.stats().live_regions, 0);
    }
    // Unknown handle: the partition manager's error, nothing to give back.
    assert_eq!(
        m.retrieve(NW, 99, TransactionType::Share),
        Err(MemError::Ffa(FfaError::InvalidParameters))
    );
}

#[test]
fn regions_may_not_overlap_each_other() {
    let mut m = shm(&[
        offer(1, TransactionType::Share, &[(0, 4)]),
        offer(2, TransactionType::Share, &[(10, 1), (3, 1)]),
        offer(3, TransactionType::Share, &[(4, 1)]),
    ]);
    let a = m.retrieve(NW, 1, TransactionType::Share).unwrap();
    assert_eq!(
        m.retrieve(NW, 2, TransactionType::Share),
        Err(MemError::Rejected(RejectReason::Overlap))
    );
    let b = m.retrieve(NW, 3, TransactionType::Share).unwrap();
    assert_eq!(m.stats().mapped_pages, 5);
    m.release(a.region).unwrap();
    let c = m.retrieve(NW, 1, TransactionType::Share).unwrap();
    assert!(
        c.region != a.region && c.region != b.region,
        "ids are not reused right away"
    );
}

#[test]
fn a_failed_map_unmaps_what_was_mapped_and_relinquishes() {
    let mut m = shm(&[offer(1, TransactionType::Lend, &[(0, 1), (2, 3), (9, 1)])]);
    m.platform.fail_map_at = Some(2);
    assert_eq!(
        m.retrieve(NW, 1, TransactionType::Lend),
        Err(MemError::Rejected(RejectReason::MapFailed))
    );
    assert!(m.platform.mapped.is_empty());
    assert_eq!(m.platform.relinquished, [1]);
}

#[test]
fn refused_relinquish_keeps_the_region_mapped() {
    let mut m = shm(&[offer(1, TransactionType::Lend, &[(0, 2)])]);
    let id = m.retrieve(NW, 1, TransactionType::Lend).unwrap().region;
    m.platform.refuse_relinquish = true;
    assert_eq!(m.release(id), Err(MemError::Ffa(FfaError::Denied)));
    assert_eq!(m.stats().live_regions, 1);
    assert_eq!(m.stats().mapped_pages, 2);
    assert!(m.checksum(id, 0, 8192).is_ok());
    m.platform.refuse_relinquish = false;
    m.release(id).unwrap();
    assert_eq!(m.stats().mapped_pages, 0);
}

#[test]
fn donated_memory_is_unmapped_not_relinquished() {
    let mut m = shm(&[offer(1, TransactionType::Donate, &[(0, 1)])]);
    let id = m.retrieve(NW, 1, TransactionType::Donate).unwrap().region;
    m.release(id).unwrap();
    assert!(m.platform.relinquished.is_empty());
    assert_eq!(m.stats().mapped_pages, 0);
}

#[test]
fn read_only_regions_refuse_fill() {
    let mut ro = offer(1, TransactionType::Share, &[(0, 1)]);
    ro.receivers[0].perm.data_access = DataAccess::ReadOnly;
    let mut m = shm(&[ro]);
    let info = m.retrieve(NW, 1, TransactionType::Share).unwrap();
    assert_eq!(info.flags & region_flags::WRITABLE, 0);
    assert_eq!(
        m.fill(info.region, 0, 1, 0),
        Err(MemError::ReadOnly(info.region))
    );
    assert!(m.checksum(info.region, 0, 4096).is_ok());
}

#[test]
fn relinquish_probe_refuses_held_handles() {
    let mut m = shm(&[offer(5, TransactionType::Share, &[(0, 1)])]);
    let id = m.retrieve(NW, 5, TransactionType::Share).unwrap().region;
    assert_eq!(m.relinquish_unheld(5), Err(MemError::Held(Handle(5))));
    m.release(id).unwrap();
    // A second relinquish: the partition manager's answer comes back.
    assert_eq!(
        m.relinquish_unheld(5),
        Err(MemError::Ffa(FfaError::InvalidParameters))
    );
}

#[test]
fn table_is_bounded_and_cycles_leak_nothing() {
    let offers: Vec<MemTransaction> = (1..=MAX_REGIONS as u64 + 1)
        .map(|h| offer(h, TransactionType::Share, &[(h - 1, 1)]))
        .collect();
    let mut m = shm(&offers);
    let ids: Vec<u32> = (1..=MAX_REGIONS as u64)
        .map(|h| m.retrieve(NW, h, TransactionType::Share).unwrap().region)
        .collect();
    assert_eq!(
        m.retrieve(NW, MAX_REGIONS as u64 + 1, TransactionType::Share),
        Err(MemError::NoRoom)
    );
    for id in ids {
        m.release(id).unwrap();
    }
    for _ in 0..200 {
        let id = m.retrieve(NW, 3, TransactionType::Share).unwrap().region;
        m.fill(id, 0, 4096, id).unwrap();
        m.release(id).unwrap();
    }
    let s = m.stats();
    assert_eq!((s.live_regions, s.mapped_pages), (0, 0));
    assert_eq!((s.retrieves, s.relinquishes), (216, 216));
}

/// Random commands with hostile arguments: nothing panics, every access the service makes is to
/// a page it mapped (the fake asserts it), and what it holds always matches the page table.
#[test]
fn random_commands_touch_only_mapped_memory() {
    let mut st = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        st ^= st >> 12;
        st ^= st << 25;
        st ^= st >> 27;
        st.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let offers: Vec<MemTransaction> = (0..24u64)
        .map(|h| {
            let ty = [TransactionType::Share, TransactionType::Lend][(h % 2) as usize];
            // Some offers overlap each other or the SP's own pages (58..64).
            offer(h + 1, ty, &[(h * 2 % 62, 1 + (h % 3) as u32)])
        })
        .collect();
    let mut m = shm(&offers);
    let (mut sums, mut fills) = (0u32, 0u32);
    for i in 0..20_000u32 {
        let r = next();
        // Half the time a region that is held, else any id.
        let region = match m.regions.len() {
            n if n > 0 && r & 1 == 0 => m.regions[(r >> 8) as usize % n].id,
            _ => (r >> 8) as u32 % 64,
        };
        let offset = match (r >> 40) % 3 {
            0 => 0,
            1 => ((r >> 20) % 20_000) as u32,
            _ => (r >> 16) as u32,
        };
        let len = match (r >> 44) % 3 {
            0 => ((r >> 24) % 9000) as u32,
            1 => u32::MAX - offset / 2,
            _ => (r >> 32) as u32,
        };
        match (r >> 60) % 6 {
            0 | 1 => {
                let t = [
                    TransactionType::Unspecified,
                    TransactionType::Share,
                    TransactionType::Lend,
                    TransactionType::Donate,
                ][(r >> 4) as usize % 4];
                let _ = m.retrieve(NW, (r >> 8) % 30, t);
            }
            2 => sums += u32::from(m.checksum(region, offset, len).is_ok()),
            3 => fills += u32::from(m.fill(region, offset, len, i).is_ok()),
            4 => {
                let _ = m.release(region);
            }
            _ => {
                let _ = m.relinquish_unheld((r >> 8) % 30);
            }
        }
        let held: u64 = m.regions.iter().map(|r| r.pages).sum();
        assert_eq!(m.stats().mapped_pages as u64, held, "after op {i}");
    }
    // The run reached the interesting paths, not only the refusals.
    let s = m.stats();
    assert!(s.retrieves > 100 && s.relinquishes > 50, "{s:?}");
    assert!(sums > 100 && fills > 100, "{sums} checksums, {fills} fills");
}

#[test]
fn pin_gives_lent_contiguous_regions_and_blocks_release_and_writes() {
    let mut m = shm(&[
        offer(1, TransactionType::Lend, &[(4, 2), (6, 1)]),
        offer(2, TransactionType::Share, &[(10, 1)]),
        offer(3, TransactionType::Lend, &[(12, 1), (20, 1)]),
        offer(4, TransactionType::Donate, &[(30, 1)]),
    ]);
    for (i, b) in m.platform.mem.iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    let lent = m.retrieve(NW, 1, TransactionType::Lend).unwrap().region;
    let shared = m.retrieve(NW, 2, TransactionType::Share).unwrap().region;
    let gappy = m.retrieve(NW, 3, TransactionType::Lend).unwrap().region;
    let donated = m.retrieve(NW, 4, TransactionType::Donate).unwrap().region;
    assert_eq!(m.pin(shared), Err(PinError::NotLent));
    assert_eq!(m.pin(gappy), Err(PinError::NotContiguous));
    assert_eq!(m.pin(99), Err(PinError::NoSuchRegion(99)));
    let bytes = m.pin(lent).unwrap();
    let o = (4 * PAGE) as usize;
    assert_eq!(bytes, &m.platform.mem[o..o + 3 * PAGE as usize]);
    assert_eq!(m.pin(lent), Err(PinError::AlreadyPinned));
    assert_eq!(m.release(lent), Err(MemError::Pinned(lent)));
    assert_eq!(m.fill(lent, 0, 1, 0), Err(MemError::Pinned(lent)));
    assert_eq!(m.write_at(lent, 0, &[1]), Err(MemError::Pinned(lent)));
    assert!(m.pin(donated).is_ok());
    // SAFETY: `bytes` is not used after this.
    unsafe { m.unpin(lent) };
    assert_eq!(m.release(lent), Ok(()));
    assert_eq!(m.release(shared), Ok(()));
    assert_eq!(m.release(gappy), Ok(()));
}

#[test]
fn read_at_and_write_at_cross_ranges_and_check_bounds() {
    let mut m = shm(&[offer(5, TransactionType::Share, &[(4, 1), (8, 1)])]);
    let id = m.retrieve(NW, 5, TransactionType::Share).unwrap().region;
    let data: Vec<u8> = (0..100u8).collect();
    m.write_at(id, 4096 - 50, &data).unwrap();
    let mut back = vec![0u8; 100];
    m.read_at(id, 4096 - 50, &mut back).unwrap();
    assert_eq!(back, data);
    // The second half went to page 8, not page 5.
    let p8 = (8 * PAGE) as usize;
    assert_eq!(&m.platform.mem[p8..p8 + 50], &data[50..]);
    assert_eq!(m.write_at(id, 8192 - 10, &data), Err(MemError::OutOfBounds));
    assert_eq!(
        m.read_at(id, u32::MAX, &mut back),
        Err(MemError::OutOfBounds)
    );
    assert_eq!(m.read_at(42, 0, &mut back), Err(MemError::NoSuchRegion(42)));
}

/// Hafnium refuses NX in a share's retrieve and requires it in a single-borrower lend's: the
/// SP asks in the form the type needs, and tries both when the client left the type out.
#[test]
fn retrieve_request_form_follows_the_transaction_type() {
    let mut m = shm(&[
        offer(0, TransactionType::Share, &[(0, 1)]),
        offer(1, TransactionType::Lend, &[(2, 1)]),
        offer(2, TransactionType::Donate, &[(4, 1)]),
        offer(3, TransactionType::Share, &[(6, 1)]),
        offer(4, TransactionType::Lend, &[(8, 1)]),
    ]);
    // Handle 0 is Hafnium's first handle.
    m.retrieve(NW, 0, TransactionType::Share).unwrap();
    m.retrieve(NW, 1, TransactionType::Lend).unwrap();
    m.retrieve(NW, 2, TransactionType::Donate).unwrap();
    assert_eq!(m.platform.refused_forms, 0);
    m.retrieve(NW, 3, TransactionType::Unspecified).unwrap();
    assert_eq!(m.platform.refused_forms, 0);
    let lent = m.retrieve(NW, 4, TransactionType::Unspecified).unwrap();
    assert_eq!(m.platform.refused_forms, 1);
    assert_eq!(
        lent.flags >> region_flags::TYPE_SHIFT & 3,
        TransactionType::Lend as u32
    );
    // A lend's unspecified type is mapped as normal memory, NS from the response.
    assert!(m.platform.mapped.get(&(BASE + 8 * PAGE)).unwrap().ns);
    assert_eq!(m.stats().live_regions, 5);
}

/// A response the SPMC handed out but the SP cannot use is relinquished, so the owner can
/// reclaim (Hafnium otherwise answers "not relinquished by all borrowers").
#[test]
fn unusable_response_is_relinquished() {
    let mut m = shm(&[offer(5, TransactionType::Lend, &[(0, 2)])]);
    m.platform.garble_response = true;
    assert_eq!(
        m.retrieve(NW, 5, TransactionType::Lend),
        Err(MemError::Rejected(RejectReason::BadDescriptor))
    );
    assert_eq!(m.platform.relinquished, vec![5]);
    assert!(m.platform.retrieved.is_empty());
    let s = m.stats();
    assert_eq!((s.live_regions, s.mapped_pages), (0, 0));
    assert_eq!((s.retrieves, s.relinquishes), (1, 1));
}

/// A share whose response leaves the memory type unspecified is refused (and given back).
#[test]
fn share_without_memory_type_is_refused() {
    let mut o = offer(6, TransactionType::Share, &[(0, 1)]);
    o.attributes.mem_type = MemType::Unspecified;
    let mut m = shm(&[o]);
    assert_eq!(
        m.retrieve(NW, 6, TransactionType::Share),
        Err(MemError::Rejected(RejectReason::UnsupportedAttributes))
    );
    assert_eq!(m.platform.relinquished, vec![6]);
}
