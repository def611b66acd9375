//! [`Response`]: a reply's registers encoded and decoded for the command they answer.

use crate::request::check_width;
use crate::*;

/// The `info` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub protocol_version: u32,
    /// Identifies the SP build (e.g. the commit); opaque to clients.
    pub build_id: u32,
    /// [`caps`] bits.
    pub capabilities: u64,
    /// The SP crate version, major << 16 | minor << 8 | patch.
    pub sp_version: u32,
}

/// A decoded response. `Ping` borrows its echo from the registers it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Ping {
        counter: u64,
        payload: &'a [u64],
    },
    Info(Info),
    MemRegion(RegionInfo),
    Checksum(u32),
    MemStats(MemStats),
    Model(ModelInfo),
    Generated(GenerateResult),
    FlexSwitched(FlexSwitch),
    FlexStats(FlexStats),
    /// The value a `FlexProbe` load returned.
    Probed(u64),
    DeviceKey(DeviceKey),
    /// `Attest`: the report's length in the I/O buffer.
    Attested(u32),
    NpuSwitched(NpuSwitch),
    NpuGemm(NpuGemmResult),
    /// A command that succeeded without results (`MemFill`, `MemRelease`,
    /// `MemRelinquishHandle`, `ModelUnload`).
    Done,
    Error {
        status: Status,
        detail: u64,
    },
}

impl<'a> Response<'a> {
    pub fn error(e: ProtoError) -> Self {
        Response::Error {
            status: e.status(),
            detail: e.detail(),
        }
    }

    /// Writes the response into `out`, zeroing unused registers. In a 32-bit transport, values
    /// wider than 32 bits are truncated only where the protocol says so (the ping counter and
    /// echo);
    /// anything else too wide is an error.
    pub fn encode(&self, out: &mut [u64], width: Width) -> Result<(), EncodeError> {
        let need = match self {
            Response::Ping { payload, .. } => 2 + payload.len(),
            Response::Info(_) | Response::MemRegion(_) | Response::MemStats(_) => 5,
            Response::Model(_) | Response::Generated(_) => 8,
            Response::Checksum(_) | Response::Probed(_) | Response::Attested(_) => 2,
            Response::DeviceKey(_) => 1 + DeviceKey::REGS,
            Response::FlexSwitched(_) => 5,
            Response::FlexStats(_) => FlexStats::REGS,
            Response::NpuSwitched(_) => 4,
            Response::NpuGemm(_) => 1 + NpuGemmResult::REGS,
            Response::Done => 1,
            Response::Error { .. } => 2,
        };
        if out.len() < need {
            return Err(EncodeError::NoRoom {
                need,
                have: out.len(),
            });
        }
        out.fill(0);
        match *self {
            Response::Ping { counter, payload } => {
                out[1] = counter & width.mask();
                // The echo is of the message: bits a 32-bit request left undefined go too.
                for (o, p) in out[2..need].iter_mut().zip(payload) {
                    *o = p & width.mask();
                }
            }
            Response::Info(i) => {
                out[1] = u64::from(i.protocol_version);
                out[2] = u64::from(i.build_id);
                out[3] = i.capabilities & width.mask();
                out[4] = u64::from(i.sp_version);
            }
            Response::MemRegion(r) => {
                out[1..5].copy_from_slice(&[r.region, r.pages, r.ranges, r.flags].map(u64::from));
            }
            Response::Checksum(c) => out[1] = u64::from(c),
            Response::MemStats(s) => {
                out[1..5].copy_from_slice(
                    &[s.live_regions, s.mapped_pages, s.retrieves, s.relinquishes].map(u64::from),
                );
            }
            Response::Model(m) => {
                out[1..8].copy_from_slice(&[
                    u64::from(m.n_layers),
                    u64::from(m.dim),
                    u64::from(m.vocab),
                    u64::from(m.context),
                    u64::from(m.matvec_path) | u64::from(m.matmul_path) << 8,
                    u64::from(m.region),
                    m.heap_bytes,
                ]);
            }
            Response::Generated(g) => {
                out[1..8].copy_from_slice(&[
                    u64::from(g.prompt_tokens),
                    u64::from(g.generated),
                    u64::from(g.text_len),
                    g.stop as u64,
                    g.prefill_ticks,
                    g.decode_ticks,
                    g.counter_hz,
                ]);
            }
            Response::FlexSwitched(f) => {
                out[1..5].copy_from_slice(&[
                    u64::from(f.pages),
                    u64::from(f.owner_extents),
                    u64::from(f.regions_used),
                    f.ticks,
                ]);
            }
            Response::FlexStats(f) => out[1..FlexStats::REGS].copy_from_slice(&f.to_regs()),
            Response::Probed(v) => out[1] = v,
            Response::DeviceKey(k) => out[1..1 + DeviceKey::REGS].copy_from_slice(&k.to_regs()),
            Response::Attested(n) => out[1] = u64::from(n),
            Response::NpuSwitched(s) => out[1..4].copy_from_slice(&[s.ticks, s.switches, s.jobs]),
            Response::NpuGemm(g) => out[1..1 + NpuGemmResult::REGS].copy_from_slice(&g.to_regs()),
            Response::Done => {}
            Response::Error { status, detail } => {
                out[0] = status as u64;
                out[1] = detail & width.mask();
            }
        }
        check_width(out, width)
    }

    /// Parses a response to `cmd`. Bits above `width` are ignored.
    pub fn decode(regs: &'a [u64], width: Width, cmd: Command) -> Result<Self, DecodeError> {
        let too_short = DecodeError::TooShort { regs: regs.len() };
        let word = *regs.first().ok_or(too_short)? & width.mask();
        let status = Status::from_code(word).ok_or(DecodeError::BadStatus(word))?;
        let reg = |i: usize| regs.get(i).map(|r| r & width.mask()).ok_or(too_short);
        if status != Status::Ok {
            return Ok(Response::Error {
                status,
                detail: reg(1)?,
            });
        }
        match cmd {
            Command::Ping => Ok(Response::Ping {
                counter: reg(1)?,
                payload: &regs[2..],
            }),
            Command::Info => Ok(Response::Info(Info {
                protocol_version: reg(1)? as u32,
                build_id: reg(2)? as u32,
                capabilities: reg(3)?,
                sp_version: reg(4)? as u32,
            })),
            // A fault request never gets a successful reply.
            Command::Fault => Err(DecodeError::BadStatus(word)),
            Command::MemRetrieve => Ok(Response::MemRegion(RegionInfo {
                region: reg(1)? as u32,
                pages: reg(2)? as u32,
                ranges: reg(3)? as u32,
                flags: reg(4)? as u32,
            })),
            Command::MemChecksum => Ok(Response::Checksum(reg(1)? as u32)),
            Command::MemStats => Ok(Response::MemStats(MemStats {
                live_regions: reg(1)? as u32,
                mapped_pages: reg(2)? as u32,
                retrieves: reg(3)? as u32,
                relinquishes: reg(4)? as u32,
            })),
            Command::MemFill
            | Command::MemRelease
            | Command::MemRelinquishHandle
            | Command::ModelUnload => Ok(Response::Done),
            Command::DeviceKey => {
                let mut r = [0u64; DeviceKey::REGS];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = reg(i + 1)?;
                }
                Ok(Response::DeviceKey(DeviceKey::from_regs(&r)))
            }
            Command::Attest => Ok(Response::Attested(reg(1)? as u32)),
            Command::ModelLoad | Command::ModelLoadSealed => {
                let paths = reg(5)?;
                Ok(Response::Model(ModelInfo {
                    n_layers: reg(1)? as u32,
                    dim: reg(2)? as u32,
                    vocab: reg(3)? as u32,
                    context: reg(4)? as u32,
                    matvec_path: paths as u8,
                    matmul_path: (paths >> 8) as u8,
                    region: reg(6)? as u32,
                    heap_bytes: reg(7)?,
                }))
            }
            Command::Generate => Ok(Response::Generated(GenerateResult {
                prompt_tokens: reg(1)? as u32,
                generated: reg(2)? as u32,
                text_len: reg(3)? as u32,
                stop: match reg(4)? {
                    1 => StopReason::MaxTokens,
                    2 => StopReason::EndOfText,
                    _ => return Err(DecodeError::BadStatus(word)),
                },
                prefill_ticks: reg(5)?,
                decode_ticks: reg(6)?,
                counter_hz: reg(7)?,
            })),
            Command::FlexSecure | Command::FlexRelease => Ok(Response::FlexSwitched(FlexSwitch {
                pages: reg(1)? as u32,
                owner_extents: reg(2)? as u32,
                regions_used: reg(3)? as u32,
                ticks: reg(4)?,
            })),
            Command::FlexStats => {
                let mut r = [0u64; FlexStats::REGS - 1];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = reg(i + 1)?;
                }
                Ok(Response::FlexStats(FlexStats::from_regs(&r)))
            }
            Command::FlexProbe => Ok(Response::Probed(reg(1)?)),
            Command::NpuAcquire | Command::NpuRelease => Ok(Response::NpuSwitched(NpuSwitch {
                ticks: reg(1)?,
                switches: reg(2)?,
                jobs: reg(3)?,
            })),
            Command::NpuGemm => {
                let mut r = [0u64; NpuGemmResult::REGS];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = reg(i + 1)?;
                }
                Ok(Response::NpuGemm(NpuGemmResult::from_regs(&r)))
            }
        }
    }
}
