//! Command queue entries (IHI 0070 sec. 4): 16 bytes, opcode in bits [7:0] of the first word.
//!
//! Only the commands the secure driver issues are encoded; the model decodes the same set and
//! treats every other opcode as illegal (`CONS.ERR = CERROR_ILL`), as the hardware does for an
//! opcode it does not implement.

/// Opcodes (IHI 0070 sec. 4.1-4.7).
pub const OP_CFGI_STE: u8 = 0x03;
pub const OP_CFGI_ALL: u8 = 0x04;
pub const OP_TLBI_S12_VMALL: u8 = 0x28;
pub const OP_TLBI_NSNH_ALL: u8 = 0x30;
pub const OP_CMD_SYNC: u8 = 0x46;

/// `CFGI_*.SSec` (bit 10): the stream id names a secure stream. Only the secure queue may set it.
const SSEC: u64 = 1 << 10;

/// How a CMD_SYNC signals completion (`CS`, bits [13:12]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncSignal {
    /// Completion is seen by polling `CONS` past the CMD_SYNC.
    None,
    /// Also raise the command-sync interrupt (not modelled: the driver polls).
    Irq,
    /// Also send an event (SEV).
    Sev,
}

/// A command the secure driver issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Invalidate the cached STE of one stream (`leaf`: only the STE, not an L1 descriptor).
    CfgiSte { sid: u32, secure: bool, leaf: bool },
    /// Invalidate every cached configuration of the queue's security state.
    CfgiAll,
    /// Invalidate stage-1 and stage-2 TLB entries of one VMID.
    TlbiS12Vmall { vmid: u16 },
    /// Invalidate all non-secure non-hyp TLB entries.
    TlbiNsnhAll,
    /// Completes when every earlier command has.
    Sync { signal: SyncSignal },
}

/// Why a 16-byte entry is not a command this model implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    UnknownOpcode(u8),
    /// A field that must be zero or a reserved encoding is set.
    Reserved {
        opcode: u8,
    },
}

impl Command {
    pub fn encode(self) -> [u64; 2] {
        match self {
            Command::CfgiSte { sid, secure, leaf } => [
                u64::from(OP_CFGI_STE) | if secure { SSEC } else { 0 } | (u64::from(sid) << 32),
                u64::from(leaf),
            ],
            // Range = 31: all streams (IHI 0070 sec. 4.3.3).
            Command::CfgiAll => [u64::from(OP_CFGI_ALL), 31],
            Command::TlbiS12Vmall { vmid } => {
                [u64::from(OP_TLBI_S12_VMALL) | (u64::from(vmid) << 32), 0]
            }
            Command::TlbiNsnhAll => [u64::from(OP_TLBI_NSNH_ALL), 0],
            Command::Sync { signal } => {
                let cs: u64 = match signal {
                    SyncSignal::None => 0,
                    SyncSignal::Irq => 1,
                    SyncSignal::Sev => 2,
                };
                [u64::from(OP_CMD_SYNC) | (cs << 12), 0]
            }
        }
    }

    /// Decodes an entry the way the model's command processor reads it.
    pub fn decode(words: [u64; 2]) -> Result<Self, DecodeError> {
        let opcode = (words[0] & 0xff) as u8;
        let reserved = DecodeError::Reserved { opcode };
        match opcode {
            OP_CFGI_STE => {
                if words[0] & !(0xff | SSEC | (0xffff_ffff << 32)) != 0 || words[1] & !1 != 0 {
                    return Err(reserved);
                }
                Ok(Command::CfgiSte {
                    sid: (words[0] >> 32) as u32,
                    secure: words[0] & SSEC != 0,
                    leaf: words[1] & 1 != 0,
                })
            }
            OP_CFGI_ALL => {
                if words[0] & !0xff != 0 || words[1] != 31 {
                    return Err(reserved);
                }
                Ok(Command::CfgiAll)
            }
            OP_TLBI_S12_VMALL => {
                if words[0] & !(0xff | (0xffff << 32)) != 0 || words[1] != 0 {
                    return Err(reserved);
                }
                Ok(Command::TlbiS12Vmall {
                    vmid: (words[0] >> 32) as u16,
                })
            }
            OP_TLBI_NSNH_ALL => {
                if words[0] & !0xff != 0 || words[1] != 0 {
                    return Err(reserved);
                }
                Ok(Command::TlbiNsnhAll)
            }
            OP_CMD_SYNC => {
                if words[0] & !(0xff | (0b11 << 12)) != 0 || words[1] != 0 {
                    return Err(reserved);
                }
                let signal = match (words[0] >> 12) & 0b11 {
                    0 => SyncSignal::None,
                    1 => SyncSignal::Irq,
                    2 => SyncSignal::Sev,
                    _ => return Err(reserved),
                };
                Ok(Command::Sync { signal })
            }
            other => Err(DecodeError::UnknownOpcode(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let all = [
            Command::CfgiSte {
                sid: 0x1234,
                secure: true,
                leaf: true,
            },
            Command::CfgiSte {
                sid: u32::MAX,
                secure: false,
                leaf: false,
            },
            Command::CfgiAll,
            Command::TlbiS12Vmall { vmid: 7 },
            Command::TlbiNsnhAll,
            Command::Sync {
                signal: SyncSignal::None,
            },
            Command::Sync {
                signal: SyncSignal::Sev,
            },
        ];
        for c in all {
            assert_eq!(Command::decode(c.encode()), Ok(c), "{c:?}");
        }
    }

    #[test]
    fn known_bit_positions() {
        // CFGI_STE: opcode 0x03, SSec bit 10, SID in the upper half of word 0, Leaf in word 1.
        let w = Command::CfgiSte {
            sid: 5,
            secure: true,
            leaf: true,
        }
        .encode();
        assert_eq!(w, [0x0000_0005_0000_0403, 1]);
        // CMD_SYNC with CS=SIG_SEV: 0x46 | 2 << 12.
        assert_eq!(
            Command::Sync {
                signal: SyncSignal::Sev
            }
            .encode(),
            [0x2046, 0]
        );
    }

    #[test]
    fn illegal_entries_are_refused() {
        assert_eq!(
            Command::decode([0x7f, 0]),
            Err(DecodeError::UnknownOpcode(0x7f))
        );
        assert_eq!(
            Command::decode([u64::from(OP_CMD_SYNC) | (3 << 12), 0]),
            Err(DecodeError::Reserved {
                opcode: OP_CMD_SYNC
            })
        );
        assert_eq!(
            Command::decode([u64::from(OP_CFGI_ALL), 0]),
            Err(DecodeError::Reserved {
                opcode: OP_CFGI_ALL
            })
        );
    }
}
