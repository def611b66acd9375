//! Event records (IHI 0070 sec. 7.3): what the SMMU writes into the secure event queue for a
//! transaction it terminated, encoded by the model and decoded by the driver from one
//! definition here.
//!
//! A record is 32 bytes, four little-endian 64-bit words (bit numbers below are record bits,
//! word `n` holds bits `[64n+63:64n]`):
//!
//! | record bits | field | records |
//! |---|---|---|
//! | [7:0] | event number | all |
//! | 11 | SSV (a SubstreamID came with the transaction) | all with SSV |
//! | [31:12] | SubstreamID (valid if SSV) | all with SSV; `C_BAD_SUBSTREAMID` always |
//! | [63:32] | StreamID | all |
//! | [79:64] | STAG | stall faults (never here: the STEs do not stall, so 0) |
//! | 95 | Stall | translation faults (0 here) |
//! | 97 | PnU: 1 privileged, 0 unprivileged | translation faults, `F_WALK_EABT` |
//! | 98 | InD: 1 instruction, 0 data (always 0 for a write) | translation faults, `F_WALK_EABT` |
//! | 99 | RnW: 1 read, 0 write | translation faults, `F_WALK_EABT` |
//! | 103 | S2: 1 the fault is at stage 2, 0 stage 1 | translation faults, `F_WALK_EABT` |
//! | [105:104] | CLASS: 0b00 CD fetch, 0b01 stage-1 table fetch, 0b10 input address | translation faults, `F_WALK_EABT` |
//! | [191:128] | InputAddr: the transaction's 64-bit address | translation faults, `F_WALK_EABT` |
//! | [247:204] | IPA[55:12]: the faulting IPA, when S2 = 1 (UNKNOWN, written 0, when S2 = 0) | `F_TRANSLATION`, `F_ADDR_SIZE`, `F_ACCESS`, `F_PERMISSION` |
//! | [247:195] | FetchAddr[55:3]: PA of the STE / descriptor whose fetch aborted | `F_STE_FETCH`, `F_WALK_EABT` |
//!
//! Event numbers (sec. 7.3.3-7.3.16), and where the model raises each:
//!
//! | number | event | model cause |
//! |---|---|---|
//! | 0x02 | `C_BAD_STREAMID` (sec. 7.3.3) | StreamID >= 2^`S_STRTAB_BASE_CFG.LOG2SIZE`, if `S_CR2.RECINVSID` |
//! | 0x03 | `F_STE_FETCH` (7.3.4) | the STE's address is not memory |
//! | 0x04 | `C_BAD_STE` (7.3.5) | STE V = 0, or a configuration the model rejects |
//! | 0x08 | `C_BAD_SUBSTREAMID` (7.3.9) | a SubstreamID on a stream with stage 1 disabled |
//! | 0x0b | `F_WALK_EABT` (7.3.12) | a stage-2 descriptor address is not memory |
//! | 0x10 | `F_TRANSLATION` (7.3.13) | no valid descriptor, or IPA beyond `S2T0SZ` (stage 2) |
//! | 0x11 | `F_ADDR_SIZE` (7.3.14) | input beyond the IAS with stage 1 bypassed (S2 = 0); a descriptor's output beyond `S2PS` (S2 = 1) |
//! | 0x12 | `F_ACCESS` (7.3.15) | page descriptor with AF = 0 |
//! | 0x13 | `F_PERMISSION` (7.3.16) | `S2AP` forbids the access |
//!
//! Not modelled: NSIPA, GPCF, TTRnW, Stall/STAG and the IMPLEMENTATION DEFINED Reason fields
//! are written as zero and not decoded. Other event numbers decode as
//! [`RecordError::UnknownEvent`], which Arm recommends treating as non-fatal.

pub const C_BAD_STREAMID: u8 = 0x02;
pub const F_STE_FETCH: u8 = 0x03;
pub const C_BAD_STE: u8 = 0x04;
pub const C_BAD_SUBSTREAMID: u8 = 0x08;
pub const F_WALK_EABT: u8 = 0x0b;
pub const F_TRANSLATION: u8 = 0x10;
pub const F_ADDR_SIZE: u8 = 0x11;
pub const F_ACCESS: u8 = 0x12;
pub const F_PERMISSION: u8 = 0x13;

const SSV: u64 = 1 << 11;
const SSID_SHIFT: u32 = 12;
const SSID_MASK: u64 = 0xf_ffff;
const SID_SHIFT: u32 = 32;
const PNU: u64 = 1 << 33;
const IND: u64 = 1 << 34;
const RNW: u64 = 1 << 35;
const S2: u64 = 1 << 39;
const CLASS_SHIFT: u32 = 40;
/// Word 3 bits [55:12] (IPA) and [55:3] (FetchAddr), in place.
const IPA_MASK: u64 = ((1 << 56) - 1) & !0xfff;
const FETCH_MASK: u64 = ((1 << 56) - 1) & !0x7;

/// The largest SubstreamID a record can carry (20 bits).
pub const MAX_SSID: u32 = SSID_MASK as u32;

/// The stream of the transaction that led to the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub sid: u32,
    /// The SubstreamID, if one came with the transaction (SSV = 1); at most [`MAX_SSID`].
    pub ssid: Option<u32>,
}

/// The input transaction's attributes (RnW, InD, PnU; post-STE override, and the STEs this
/// crate writes override nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessAttrs {
    pub read: bool,
    /// An instruction fetch (only meaningful for a read: a record has InD = 0 for a write).
    pub instruction: bool,
    pub privileged: bool,
}

/// `CLASS`: what the faulting access was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A context descriptor fetch (stage 2 translating the CD's IPA).
    Cd,
    /// A stage-1 translation table fetch (stage 2 translating the descriptor's IPA).
    TableWalk,
    /// The transaction's own address.
    Input,
}

/// The fields every translation-related record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TranslationFault {
    pub stream: Stream,
    pub attrs: AccessAttrs,
    /// The fault arose at stage 2 (S2 = 1).
    pub stage2: bool,
    pub class: Class,
    /// The transaction's address as it entered the SMMU.
    pub input_addr: u64,
    /// The faulting IPA, 4 KiB aligned: present for stage-2 faults of the
    /// `F_TRANSLATION`/`F_ADDR_SIZE`/`F_ACCESS`/`F_PERMISSION` records (for a stage-2-only
    /// stream it is `input_addr`'s page), `None` for stage-1 faults and `F_WALK_EABT`.
    pub ipa: Option<u64>,
}

/// One decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `C_BAD_STREAMID`: the StreamID is outside the secure stream table.
    BadStreamId(Stream),
    /// `F_STE_FETCH`: fetching the STE at `fetch_addr` aborted.
    SteFetch { stream: Stream, fetch_addr: u64 },
    /// `C_BAD_STE`: the STE is invalid (V = 0) or malformed.
    BadSte(Stream),
    /// `C_BAD_SUBSTREAMID`: a SubstreamID the stream's STE cannot take.
    BadSubstreamId { sid: u32, ssid: u32 },
    /// `F_WALK_EABT`: fetching the table descriptor at `fetch_addr` aborted.
    WalkAbort {
        fault: TranslationFault,
        fetch_addr: u64,
    },
    /// `F_TRANSLATION`.
    Translation(TranslationFault),
    /// `F_ADDR_SIZE`.
    AddressSize(TranslationFault),
    /// `F_ACCESS`: access flag fault.
    AccessFlag(TranslationFault),
    /// `F_PERMISSION`.
    Permission(TranslationFault),
}

/// A record the driver cannot decode: reported as data, the queue moves on past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// An event number this crate does not decode (e.g. `F_CD_FETCH`, which needs stage 1).
    UnknownEvent { id: u8, words: [u64; 4] },
    /// `CLASS` = 0b11 (reserved) in a translation-related record.
    ReservedClass { id: u8, words: [u64; 4] },
}

/// What the driver hands on for each queue entry.
pub type Record = Result<Event, RecordError>;

fn stream_word(id: u8, s: Stream) -> u64 {
    let ss = s
        .ssid
        .map_or(0, |v| SSV | ((u64::from(v) & SSID_MASK) << SSID_SHIFT));
    u64::from(id) | ss | (u64::from(s.sid) << SID_SHIFT)
}

fn fault_words(id: u8, f: &TranslationFault, w3: u64) -> [u64; 4] {
    let a = f.attrs;
    let class: u64 = match f.class {
        Class::Cd => 0b00,
        Class::TableWalk => 0b01,
        Class::Input => 0b10,
    };
    let w1 = if a.privileged { PNU } else { 0 }
        | if a.instruction && a.read { IND } else { 0 }
        | if a.read { RNW } else { 0 }
        | if f.stage2 { S2 } else { 0 }
        | (class << CLASS_SHIFT);
    [stream_word(id, f.stream), w1, f.input_addr, w3]
}

impl Event {
    /// The record's event number.
    pub fn id(&self) -> u8 {
        match self {
            Event::BadStreamId(_) => C_BAD_STREAMID,
            Event::SteFetch { .. } => F_STE_FETCH,
            Event::BadSte(_) => C_BAD_STE,
            Event::BadSubstreamId { .. } => C_BAD_SUBSTREAMID,
            Event::WalkAbort { .. } => F_WALK_EABT,
            Event::Translation(_) => F_TRANSLATION,
            Event::AddressSize(_) => F_ADDR_SIZE,
            Event::AccessFlag(_) => F_ACCESS,
            Event::Permission(_) => F_PERMISSION,
        }
    }

    /// The record as the SMMU writes it. Out-of-range values are truncated to their fields
    /// (SubstreamID to 20 bits, addresses to 56).
    pub fn encode(&self) -> [u64; 4] {
        let id = self.id();
        match *self {
            Event::BadStreamId(s) | Event::BadSte(s) => [stream_word(id, s), 0, 0, 0],
            Event::SteFetch { stream, fetch_addr } => {
                [stream_word(id, stream), 0, 0, fetch_addr & FETCH_MASK]
            }
            Event::BadSubstreamId { sid, ssid } => {
                // No SSV qualifier in this record: the SubstreamID is always valid.
                let w0 = u64::from(id)
                    | ((u64::from(ssid) & SSID_MASK) << SSID_SHIFT)
                    | (u64::from(sid) << SID_SHIFT);
                [w0, 0, 0, 0]
            }
            Event::WalkAbort { fault, fetch_addr } => {
                fault_words(id, &fault, fetch_addr & FETCH_MASK)
            }
            Event::Translation(f)
            | Event::AddressSize(f)
            | Event::AccessFlag(f)
            | Event::Permission(f) => {
                let ipa = if f.stage2 {
                    f.ipa.unwrap_or(0) & IPA_MASK
                } else {
                    0
                };
                fault_words(id, &f, ipa)
            }
        }
    }

    /// Decodes one queue entry.
    pub fn decode(words: [u64; 4]) -> Record {
        let [w0, w1, w2, w3] = words;
        let id = (w0 & 0xff) as u8;
        let stream = Stream {
            sid: (w0 >> SID_SHIFT) as u32,
            ssid: (w0 & SSV != 0).then_some(((w0 >> SSID_SHIFT) & SSID_MASK) as u32),
        };
        let fault = |with_ipa: bool| -> Result<TranslationFault, RecordError> {
            let class = match (w1 >> CLASS_SHIFT) & 0b11 {
                0b00 => Class::Cd,
                0b01 => Class::TableWalk,
                0b10 => Class::Input,
                _ => return Err(RecordError::ReservedClass { id, words }),
            };
            let stage2 = w1 & S2 != 0;
            Ok(TranslationFault {
                stream,
                attrs: AccessAttrs {
                    read: w1 & RNW != 0,
                    instruction: w1 & IND != 0,
                    privileged: w1 & PNU != 0,
                },
                stage2,
                class,
                input_addr: w2,
                ipa: (with_ipa && stage2).then_some(w3 & IPA_MASK),
            })
        };
        Ok(match id {
            C_BAD_STREAMID => Event::BadStreamId(stream),
            F_STE_FETCH => Event::SteFetch {
                stream,
                fetch_addr: w3 & FETCH_MASK,
            },
            C_BAD_STE => Event::BadSte(stream),
            C_BAD_SUBSTREAMID => Event::BadSubstreamId {
                sid: stream.sid,
                ssid: ((w0 >> SSID_SHIFT) & SSID_MASK) as u32,
            },
            F_WALK_EABT => Event::WalkAbort {
                fault: fault(false)?,
                fetch_addr: w3 & FETCH_MASK,
            },
            F_TRANSLATION => Event::Translation(fault(true)?),
            F_ADDR_SIZE => Event::AddressSize(fault(true)?),
            F_ACCESS => Event::AccessFlag(fault(true)?),
            F_PERMISSION => Event::Permission(fault(true)?),
            _ => return Err(RecordError::UnknownEvent { id, words }),
        })
    }

    /// The StreamID the record names.
    pub fn sid(&self) -> u32 {
        match *self {
            Event::BadStreamId(s) | Event::BadSte(s) | Event::SteFetch { stream: s, .. } => s.sid,
            Event::BadSubstreamId { sid, .. } => sid,
            Event::WalkAbort { fault: f, .. }
            | Event::Translation(f)
            | Event::AddressSize(f)
            | Event::AccessFlag(f)
            | Event::Permission(f) => f.stream.sid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NPU: Stream = Stream {
        sid: 0x42,
        ssid: None,
    };

    fn s2_read(addr: u64) -> TranslationFault {
        TranslationFault {
            stream: NPU,
            attrs: AccessAttrs {
                read: true,
                ..AccessAttrs::default()
            },
            stage2: true,
            class: Class::Input,
            input_addr: addr,
            ipa: Some(addr & !0xfff),
        }
    }

    #[test]
    fn every_event_round_trips() {
        let with_ssid = Stream {
            sid: 7,
            ssid: Some(MAX_SSID),
        };
        let write_priv = TranslationFault {
            stream: with_ssid,
            attrs: AccessAttrs {
                read: false,
                instruction: false,
                privileged: true,
            },
            stage2: false,
            class: Class::Input,
            input_addr: 0xffff_0000_1234_5678,
            ipa: None,
        };
        let fetch = TranslationFault {
            class: Class::TableWalk,
            ..s2_read(0x1000_0010)
        };
        let all = [
            Event::BadStreamId(NPU),
            Event::BadStreamId(with_ssid),
            Event::SteFetch {
                stream: NPU,
                fetch_addr: 0x0e40_1040,
            },
            Event::BadSte(with_ssid),
            Event::BadSubstreamId { sid: 3, ssid: 9 },
            Event::WalkAbort {
                fault: TranslationFault {
                    ipa: None,
                    ..s2_read(0x2000_0008)
                },
                fetch_addr: 0x0e41_2008,
            },
            Event::Translation(s2_read(0x1000_1004)),
            Event::Translation(fetch),
            Event::AddressSize(write_priv),
            Event::AccessFlag(s2_read(0xfff0_0000)),
            Event::Permission(TranslationFault {
                attrs: AccessAttrs::default(),
                ..s2_read(0x1000_2000)
            }),
            Event::Permission(TranslationFault {
                attrs: AccessAttrs {
                    read: true,
                    instruction: true,
                    privileged: false,
                },
                class: Class::Cd,
                ..s2_read(0x1000_2000)
            }),
        ];
        for e in all {
            assert_eq!(Event::decode(e.encode()), Ok(e), "{e:?}");
        }
    }

    /// Field positions checked bit by bit against sec. 7.3's record layouts.
    #[test]
    fn known_bit_positions() {
        // F_TRANSLATION, StreamID 0x42, read, stage 2, CLASS = IN, InputAddr 0x1000_1004.
        let w = Event::Translation(s2_read(0x1000_1004)).encode();
        assert_eq!(w[0], 0x0000_0042_0000_0010);
        assert_eq!(w[1], (1 << 35) | (1 << 39) | (0b10 << 40));
        assert_eq!(w[2], 0x1000_1004);
        assert_eq!(w[3], 0x1000_1000);
        // F_PERMISSION for a privileged write: PnU (bit 97) set, RnW (bit 99) clear.
        let p = Event::Permission(TranslationFault {
            attrs: AccessAttrs {
                read: false,
                instruction: true, // InD is 0 for a write whatever the device says
                privileged: true,
            },
            ..s2_read(0x5000)
        })
        .encode();
        assert_eq!(p[0] & 0xff, 0x13);
        assert_eq!(p[1], (1 << 33) | (1 << 39) | (0b10 << 40));
        // C_BAD_STREAMID with SubstreamID 5: SSV bit 11, SubstreamID [31:12].
        let b = Event::BadStreamId(Stream {
            sid: 300,
            ssid: Some(5),
        })
        .encode();
        assert_eq!(b, [(300 << 32) | (5 << 12) | (1 << 11) | 0x02, 0, 0, 0]);
        // F_STE_FETCH: FetchAddr[55:3] in place in the last word.
        let f = Event::SteFetch {
            stream: NPU,
            fetch_addr: 0x0e40_1040,
        }
        .encode();
        assert_eq!(f, [0x0000_0042_0000_0003, 0, 0, 0x0e40_1040]);
        // A stage-1 fault leaves the (UNKNOWN) IPA zero and decodes it as absent.
        let s1 = TranslationFault {
            stage2: false,
            ipa: Some(0x1000),
            ..s2_read(0x1_0000_0000_0000)
        };
        assert_eq!(Event::AddressSize(s1).encode()[3], 0);
        assert!(matches!(
            Event::decode(Event::AddressSize(s1).encode()),
            Ok(Event::AddressSize(TranslationFault { ipa: None, .. }))
        ));
    }

    #[test]
    fn undecodable_records_are_data() {
        // F_CD_FETCH (0x09) is architected but not decoded here.
        let cd = [0x0000_0001_0000_0009, 0, 0, 0];
        assert_eq!(
            Event::decode(cd),
            Err(RecordError::UnknownEvent { id: 9, words: cd })
        );
        let mut bad_class = Event::Translation(s2_read(0)).encode();
        bad_class[1] |= 0b11 << 40;
        assert_eq!(
            Event::decode(bad_class),
            Err(RecordError::ReservedClass {
                id: F_TRANSLATION,
                words: bad_class
            })
        );
    }
}
