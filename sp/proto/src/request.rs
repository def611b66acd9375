//! [`Request`]: a request's registers decoded (every deviation an error, never a panic) and
//! encoded.

use crate::*;

/// A decoded request. `Ping` borrows the echo payload from the input registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Ping {
        payload: &'a [u64],
    },
    Info,
    Fault {
        kind: FaultKind,
    },
    MemRetrieve {
        handle: u64,
        tx_type: u8,
    },
    MemChecksum {
        region: u32,
        offset: u32,
        len: u32,
    },
    MemFill {
        region: u32,
        offset: u32,
        len: u32,
        pattern: u32,
    },
    MemRelease {
        region: u32,
    },
    MemStats,
    MemRelinquishHandle {
        handle: u64,
    },
    ModelLoad {
        handle: u64,
    },
    DeviceKey,
    ModelLoadSealed {
        package: u64,
        dest: u64,
        /// The package's length in bytes (the region is whole pages).
        len: u64,
    },
    Attest {
        io_handle: u64,
        nonce: [u8; NONCE_LEN],
    },
    Generate(GenerateArgs),
    ModelUnload,
    FlexSecure {
        region: u32,
        owner: u32,
        scrub: ScrubKind,
    },
    FlexRelease {
        region: u32,
    },
    FlexStats,
    FlexProbe {
        addr: u64,
    },
    NpuAcquire,
    NpuRelease,
    NpuGemm(NpuGemmArgs),
}

/// Register `i` as a 32-bit argument: missing registers read as 0, wider values are malformed.
fn arg32(regs: &[u64], i: usize, width: Width) -> Result<u32, ProtoError> {
    let v = regs.get(i).map_or(0, |r| r & width.mask());
    u32::try_from(v).map_err(|_| ProtoError::Malformed { index: i })
}

/// Registers from `from` on must be zero.
fn rest_zero(regs: &[u64], from: usize, width: Width) -> Result<(), ProtoError> {
    match regs.iter().skip(from).position(|r| r & width.mask() != 0) {
        Some(i) => Err(ProtoError::Malformed { index: from + i }),
        None => Ok(()),
    }
}

fn handle_arg(regs: &[u64], width: Width) -> Result<u64, ProtoError> {
    let lo = arg32(regs, 1, width)?;
    let hi = arg32(regs, 2, width)?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

const CMD_ID_MASK: u64 = 0xffff;

impl<'a> Request<'a> {
    /// Parses request registers. Bits above `width` are ignored (undefined for SMC32); every other
    /// deviation is an error, never a panic.
    pub fn decode(regs: &'a [u64], width: Width) -> Result<Self, ProtoError> {
        let word = *regs.first().ok_or(ProtoError::TooShort { regs: 0 })? & width.mask();
        if word & !CMD_ID_MASK != 0 {
            return Err(ProtoError::Malformed { index: 0 });
        }
        let id = (word & CMD_ID_MASK) as u16;
        match Command::from_id(id).ok_or(ProtoError::UnknownCommand(id))? {
            Command::Ping => {
                if regs.len() < 2 {
                    return Err(ProtoError::TooShort { regs: regs.len() });
                }
                if regs[1] & width.mask() != 0 {
                    return Err(ProtoError::Malformed { index: 1 });
                }
                Ok(Request::Ping {
                    payload: &regs[2..],
                })
            }
            Command::Info => {
                if let Some(i) = regs[1..].iter().position(|r| r & width.mask() != 0) {
                    return Err(ProtoError::Malformed { index: i + 1 });
                }
                Ok(Request::Info)
            }
            Command::Fault => {
                let kind = regs
                    .get(1)
                    .and_then(|k| FaultKind::from_u64(k & width.mask()))
                    .ok_or(ProtoError::Malformed { index: 1 })?;
                if let Some(i) = regs[2..].iter().position(|r| r & width.mask() != 0) {
                    return Err(ProtoError::Malformed { index: i + 2 });
                }
                Ok(Request::Fault { kind })
            }
            Command::MemRetrieve => {
                let handle = handle_arg(regs, width)?;
                let tx_type = arg32(regs, 3, width)?;
                if tx_type > 3 {
                    return Err(ProtoError::Malformed { index: 3 });
                }
                rest_zero(regs, 4, width)?;
                Ok(Request::MemRetrieve {
                    handle,
                    tx_type: tx_type as u8,
                })
            }
            Command::MemChecksum => {
                let r = Request::MemChecksum {
                    region: arg32(regs, 1, width)?,
                    offset: arg32(regs, 2, width)?,
                    len: arg32(regs, 3, width)?,
                };
                rest_zero(regs, 4, width)?;
                Ok(r)
            }
            Command::MemFill => {
                let r = Request::MemFill {
                    region: arg32(regs, 1, width)?,
                    offset: arg32(regs, 2, width)?,
                    len: arg32(regs, 3, width)?,
                    pattern: arg32(regs, 4, width)?,
                };
                rest_zero(regs, 5, width)?;
                Ok(r)
            }
            Command::MemRelease => {
                let region = arg32(regs, 1, width)?;
                rest_zero(regs, 2, width)?;
                Ok(Request::MemRelease { region })
            }
            Command::MemStats => {
                rest_zero(regs, 1, width)?;
                Ok(Request::MemStats)
            }
            Command::MemRelinquishHandle => {
                let handle = handle_arg(regs, width)?;
                rest_zero(regs, 3, width)?;
                Ok(Request::MemRelinquishHandle { handle })
            }
            Command::ModelLoad => {
                let handle = handle_arg(regs, width)?;
                rest_zero(regs, 3, width)?;
                Ok(Request::ModelLoad { handle })
            }
            Command::ModelUnload => {
                rest_zero(regs, 1, width)?;
                Ok(Request::ModelUnload)
            }
            Command::DeviceKey => {
                rest_zero(regs, 1, width)?;
                Ok(Request::DeviceKey)
            }
            Command::ModelLoadSealed => {
                let package = handle_arg(regs, width)?;
                let dest =
                    u64::from(arg32(regs, 4, width)?) << 32 | u64::from(arg32(regs, 3, width)?);
                let len =
                    u64::from(arg32(regs, 6, width)?) << 32 | u64::from(arg32(regs, 5, width)?);
                rest_zero(regs, 7, width)?;
                Ok(Request::ModelLoadSealed { package, dest, len })
            }
            Command::Attest => {
                let io_handle = handle_arg(regs, width)?;
                // The nonce needs 64-bit registers.
                if width != Width::W64 {
                    return Err(ProtoError::Malformed { index: 3 });
                }
                let mut n = [0u64; 4];
                for (i, w) in n.iter_mut().enumerate() {
                    *w = *regs
                        .get(3 + i)
                        .ok_or(ProtoError::TooShort { regs: regs.len() })?;
                }
                rest_zero(regs, 7, width)?;
                Ok(Request::Attest {
                    io_handle,
                    nonce: sealed::nonce_from_regs(&n),
                })
            }
            Command::FlexSecure => {
                let region = arg32(regs, 1, width)?;
                let owner = arg32(regs, 2, width)?;
                let scrub = ScrubKind::from_u64(u64::from(arg32(regs, 3, width)?))
                    .ok_or(ProtoError::Malformed { index: 3 })?;
                rest_zero(regs, 4, width)?;
                Ok(Request::FlexSecure {
                    region,
                    owner,
                    scrub,
                })
            }
            Command::FlexRelease => {
                let region = arg32(regs, 1, width)?;
                rest_zero(regs, 2, width)?;
                Ok(Request::FlexRelease { region })
            }
            Command::FlexStats => {
                rest_zero(regs, 1, width)?;
                Ok(Request::FlexStats)
            }
            Command::FlexProbe => {
                let addr = handle_arg(regs, width)?;
                if !addr.is_multiple_of(8) {
                    return Err(ProtoError::Malformed { index: 1 });
                }
                rest_zero(regs, 3, width)?;
                Ok(Request::FlexProbe { addr })
            }
            Command::NpuAcquire => {
                rest_zero(regs, 1, width)?;
                Ok(Request::NpuAcquire)
            }
            Command::NpuRelease => {
                rest_zero(regs, 1, width)?;
                Ok(Request::NpuRelease)
            }
            Command::NpuGemm => {
                let a = NpuGemmArgs {
                    region: arg32(regs, 1, width)?,
                    m: arg32(regs, 2, width)?,
                    n: arg32(regs, 3, width)?,
                    k: arg32(regs, 4, width)?,
                    seed: arg32(regs, 5, width)?,
                    flags: arg32(regs, 6, width)?,
                };
                if a.flags & !gemm_flags::OUTSIDE_STE != 0 {
                    return Err(ProtoError::Malformed { index: 6 });
                }
                rest_zero(regs, 7, width)?;
                Ok(Request::NpuGemm(a))
            }
            Command::Generate => {
                let io_handle = handle_arg(regs, width)?;
                let prompt_len = arg32(regs, 3, width)?;
                let max_tokens = arg32(regs, 4, width)?;
                if max_tokens == 0 {
                    return Err(ProtoError::Malformed { index: 4 });
                }
                let temperature = f32::from_bits(arg32(regs, 5, width)?);
                if !(temperature.is_finite() && temperature >= 0.0) {
                    return Err(ProtoError::Malformed { index: 5 });
                }
                let top_k = arg32(regs, 6, width)?;
                let top_p = f32::from_bits(arg32(regs, 7, width)?);
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(ProtoError::Malformed { index: 7 });
                }
                let seed =
                    u64::from(arg32(regs, 9, width)?) << 32 | u64::from(arg32(regs, 8, width)?);
                rest_zero(regs, 10, width)?;
                Ok(Request::Generate(GenerateArgs {
                    io_handle,
                    prompt_len,
                    max_tokens,
                    sampling: Sampling {
                        temperature,
                        top_k,
                        top_p,
                        seed,
                    },
                }))
            }
        }
    }

    /// Writes the request into `out` (all of it: unused registers are zeroed).
    pub fn encode(&self, out: &mut [u64], width: Width) -> Result<(), EncodeError> {
        let need = match self {
            Request::Ping { payload } => 2 + payload.len(),
            Request::Info => 1,
            Request::Fault { .. } => 2,
            Request::MemRetrieve { .. } => 4,
            Request::MemChecksum { .. } => 4,
            Request::MemFill { .. } => 5,
            Request::MemRelease { .. } => 2,
            Request::MemStats => 1,
            Request::MemRelinquishHandle { .. } => 3,
            Request::ModelLoad { .. } => 3,
            Request::DeviceKey => 1,
            Request::ModelLoadSealed { .. } => 7,
            Request::Attest { .. } => 7,
            Request::Generate(_) => 10,
            Request::ModelUnload => 1,
            Request::FlexSecure { .. } => 4,
            Request::FlexRelease { .. } => 2,
            Request::FlexStats => 1,
            Request::FlexProbe { .. } => 3,
            Request::NpuAcquire | Request::NpuRelease => 1,
            Request::NpuGemm(_) => 7,
        };
        if out.len() < need {
            return Err(EncodeError::NoRoom {
                need,
                have: out.len(),
            });
        }
        out.fill(0);
        match self {
            Request::Ping { payload } => {
                out[0] = Command::Ping as u64;
                out[2..need].copy_from_slice(payload);
            }
            Request::Info => out[0] = Command::Info as u64,
            Request::Fault { kind } => {
                out[0] = Command::Fault as u64;
                out[1] = *kind as u64;
            }
            Request::MemRetrieve { handle, tx_type } => {
                out[..4].copy_from_slice(&[
                    Command::MemRetrieve as u64,
                    handle & 0xffff_ffff,
                    handle >> 32,
                    u64::from(*tx_type),
                ]);
            }
            Request::MemChecksum {
                region,
                offset,
                len,
            } => {
                out[..4].copy_from_slice(&[
                    Command::MemChecksum as u64,
                    u64::from(*region),
                    u64::from(*offset),
                    u64::from(*len),
                ]);
            }
            Request::MemFill {
                region,
                offset,
                len,
                pattern,
            } => {
                out[..5].copy_from_slice(&[
                    Command::MemFill as u64,
                    u64::from(*region),
                    u64::from(*offset),
                    u64::from(*len),
                    u64::from(*pattern),
                ]);
            }
            Request::MemRelease { region } => {
                out[..2].copy_from_slice(&[Command::MemRelease as u64, u64::from(*region)]);
            }
            Request::MemStats => out[0] = Command::MemStats as u64,
            Request::MemRelinquishHandle { handle } => {
                out[..3].copy_from_slice(&[
                    Command::MemRelinquishHandle as u64,
                    handle & 0xffff_ffff,
                    handle >> 32,
                ]);
            }
            Request::ModelLoad { handle } => {
                out[..3].copy_from_slice(&[
                    Command::ModelLoad as u64,
                    handle & 0xffff_ffff,
                    handle >> 32,
                ]);
            }
            Request::Generate(a) => {
                out[..10].copy_from_slice(&[
                    Command::Generate as u64,
                    a.io_handle & 0xffff_ffff,
                    a.io_handle >> 32,
                    u64::from(a.prompt_len),
                    u64::from(a.max_tokens),
                    u64::from(a.sampling.temperature.to_bits()),
                    u64::from(a.sampling.top_k),
                    u64::from(a.sampling.top_p.to_bits()),
                    a.sampling.seed & 0xffff_ffff,
                    a.sampling.seed >> 32,
                ]);
            }
            Request::ModelUnload => out[0] = Command::ModelUnload as u64,
            Request::DeviceKey => out[0] = Command::DeviceKey as u64,
            Request::ModelLoadSealed { package, dest, len } => {
                out[..7].copy_from_slice(&[
                    Command::ModelLoadSealed as u64,
                    package & 0xffff_ffff,
                    package >> 32,
                    dest & 0xffff_ffff,
                    dest >> 32,
                    len & 0xffff_ffff,
                    len >> 32,
                ]);
            }
            Request::Attest { io_handle, nonce } => {
                out[0] = Command::Attest as u64;
                out[1] = io_handle & 0xffff_ffff;
                out[2] = io_handle >> 32;
                out[3..7].copy_from_slice(&sealed::nonce_to_regs(nonce));
            }
            Request::FlexSecure {
                region,
                owner,
                scrub,
            } => {
                out[..4].copy_from_slice(&[
                    Command::FlexSecure as u64,
                    u64::from(*region),
                    u64::from(*owner),
                    *scrub as u64,
                ]);
            }
            Request::FlexRelease { region } => {
                out[..2].copy_from_slice(&[Command::FlexRelease as u64, u64::from(*region)]);
            }
            Request::FlexStats => out[0] = Command::FlexStats as u64,
            Request::FlexProbe { addr } => {
                out[..3].copy_from_slice(&[
                    Command::FlexProbe as u64,
                    addr & 0xffff_ffff,
                    addr >> 32,
                ]);
            }
            Request::NpuAcquire => out[0] = Command::NpuAcquire as u64,
            Request::NpuRelease => out[0] = Command::NpuRelease as u64,
            Request::NpuGemm(a) => {
                out[..7].copy_from_slice(&[
                    Command::NpuGemm as u64,
                    u64::from(a.region),
                    u64::from(a.m),
                    u64::from(a.n),
                    u64::from(a.k),
                    u64::from(a.seed),
                    u64::from(a.flags),
                ]);
            }
        }
        check_width(out, width)
    }
}

pub(crate) fn check_width(regs: &[u64], width: Width) -> Result<(), EncodeError> {
    match regs.iter().position(|r| r & !width.mask() != 0) {
        Some(index) => Err(EncodeError::TooWide { index }),
        None => Ok(()),
    }
}
