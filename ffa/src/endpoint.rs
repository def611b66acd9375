//! A thin call layer over any [`Conduit`]: one method per FF-A call, replies decoded and
//! checked. FFA_ERROR replies become [`Error::Ffa`]; a well-formed reply of the wrong kind
//! becomes [`Error::UnexpectedReply`].

use crate::{
    Conduit, ConsoleLogChars, DecodeError, DirectMsg2Args, DirectMsgArgs, EntryPoint, FfaError,
    FuncId, Handle, Interface, MemOpArgs, MsgWaitFlags, PartitionId, PartitionInfoGetFlags,
    PartitionInfoRegs, ReclaimFlags, RxTxAddr, RxTxPageCount, SuccessArgs, Uuid, Version,
    partition_info::PartitionInfoError,
};

/// What went wrong with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The callee answered FFA_ERROR with this code.
    Ffa(FfaError),
    /// The reply registers are not a valid FF-A reply.
    Decode(DecodeError),
    /// A valid reply, but not one this request allows.
    UnexpectedReply { request: FuncId, reply: FuncId },
    /// A reply whose payload is inconsistent (e.g. PARTITION_INFO_GET_REGS indices).
    BadPartitionInfo(PartitionInfoError),
    /// A memory descriptor could not be built, or the one received is malformed.
    #[cfg(any(test, feature = "alloc"))]
    Mem(crate::memory::MemError),
    /// The caller's RX/TX buffer accessor refused (data does not fit, or bad length).
    Buffer { needed: usize, size: usize },
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl From<FfaError> for Error {
    fn from(e: FfaError) -> Self {
        Self::Ffa(e)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Ffa(e) => write!(f, "FFA_ERROR {e}"),
            Self::Decode(e) => write!(f, "malformed reply: {e}"),
            Self::UnexpectedReply { request, reply } => {
                write!(f, "unexpected reply {reply:?} to {request:?}")
            }
            Self::BadPartitionInfo(e) => write!(f, "bad partition info: {e:?}"),
            #[cfg(any(test, feature = "alloc"))]
            Self::Mem(e) => write!(f, "memory descriptor: {e}"),
            Self::Buffer { needed, size } => {
                write!(f, "{needed} bytes do not fit the {size}-byte RX/TX buffer")
            }
        }
    }
}

impl core::error::Error for Error {}

/// A failed FFA_MEM_RETRIEVE_REQ flow, and whether the SPMC had already granted the memory.
///
/// Once the SPMC answers FFA_MEM_RETRIEVE_RESP the borrower holds the region at the SPMC, even
/// if the response then turns out unusable (malformed, fragments refused, too large). Such a
/// borrower must relinquish the handle, or the owner can never reclaim it (Hafnium: "not
/// relinquished by all borrowers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrieveError {
    pub error: Error,
    /// The SPMC answered RETRIEVE_RESP: the handle is held and must be relinquished.
    pub retrieved: bool,
}

impl From<RetrieveError> for Error {
    fn from(e: RetrieveError) -> Self {
        e.error
    }
}

impl core::fmt::Display for RetrieveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.retrieved {
            write!(f, "{} (after RETRIEVE_RESP: held at the SPMC)", self.error)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

/// PARTITION_INFO_GET's reply: `count` descriptors of `desc_size` bytes in the RX buffer
/// (`desc_size` is 0 when only the count was asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionCount {
    pub count: u32,
    pub desc_size: u32,
}

/// Reply to a memory send (DONATE/LEND/SHARE): done, or the SPMC wants the next fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemSendReply {
    /// FFA_SUCCESS with the handle in w2/w3.
    Done(Handle),
    /// FFA_MEM_FRAG_RX: send the fragment starting at `offset` with FFA_MEM_FRAG_TX.
    FragRx { handle: Handle, offset: u32 },
}

/// An FF-A endpoint speaking through `C`.
#[derive(Debug)]
pub struct Endpoint<C> {
    conduit: C,
}

fn success_handle(args: &SuccessArgs) -> Handle {
    Handle::from_halves(args.get(0) as u32, args.get(1) as u32)
}

impl<C: Conduit> Endpoint<C> {
    pub const fn new(conduit: C) -> Self {
        Self { conduit }
    }

    pub fn conduit(&self) -> &C {
        &self.conduit
    }

    pub fn conduit_mut(&mut self) -> &mut C {
        &mut self.conduit
    }

    pub fn into_conduit(self) -> C {
        self.conduit
    }

    /// Issue `req` and decode the reply; FFA_ERROR becomes `Err(Error::Ffa)`.
    pub fn call(&mut self, req: &Interface) -> Result<Interface, Error> {
        let f = req.func_id();
        let reply = Interface::decode_reply(f, &self.conduit.call(req.to_regs()))?;
        match reply {
            Interface::Error { code, .. } => Err(Error::Ffa(code)),
            r => Ok(r),
        }
    }

    /// Issue `req` and expect FFA_SUCCESS.
    fn call_success(&mut self, req: &Interface) -> Result<SuccessArgs, Error> {
        match self.call(req)? {
            Interface::Success { args, .. } => Ok(args),
            r => Err(Error::UnexpectedReply {
                request: req.func_id(),
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_VERSION: announce `ours`, get the callee's version. Call it first (Hafnium locks
    /// the version after any other call). Compatibility is the caller's check:
    /// `ours.is_compatible_with(theirs)`.
    pub fn version(&mut self, ours: Version) -> Result<Version, Error> {
        let req = Interface::Version { input: ours };
        match self.call(&req)? {
            Interface::VersionOut { output } => Ok(output),
            r => Err(Error::UnexpectedReply {
                request: FuncId::Version,
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_ID_GET: this endpoint's ID.
    pub fn id_get(&mut self) -> Result<PartitionId, Error> {
        Ok(self.call_success(&Interface::IdGet)?.get(0) as u16)
    }

    /// FFA_SPM_ID_GET: the SPMC's ID.
    pub fn spm_id_get(&mut self) -> Result<PartitionId, Error> {
        Ok(self.call_success(&Interface::SpmIdGet)?.get(0) as u16)
    }

    /// FFA_FEATURES: `Ok((w2, w3))` interface properties if supported, `Err(Ffa(NotSupported))`
    /// if not. For FFA_MEM_RETRIEVE_REQ pass `input_properties` bit 1 (NS-bit support).
    pub fn features(
        &mut self,
        feature_id: u32,
        input_properties: u32,
    ) -> Result<(u32, u32), Error> {
        let a = self.call_success(&Interface::Features {
            feature_id,
            input_properties,
        })?;
        Ok((a.get(0) as u32, a.get(1) as u32))
    }

    /// FFA_RXTX_MAP_64 with buffers at physical (IPA) addresses `tx` and `rx`.
    pub fn rxtx_map(&mut self, tx: u64, rx: u64, pages: RxTxPageCount) -> Result<(), Error> {
        self.call_success(&Interface::RxTxMap {
            addr: RxTxAddr::Addr64 { tx, rx },
            page_count: pages,
        })
        .map(drop)
    }

    /// FFA_RXTX_UNMAP (`id` = 0 unless a hypervisor acts for a VM).
    pub fn rxtx_unmap(&mut self, id: PartitionId) -> Result<(), Error> {
        self.call_success(&Interface::RxTxUnmap { id }).map(drop)
    }

    /// FFA_RX_RELEASE: hand the RX buffer back to the producer.
    pub fn rx_release(&mut self) -> Result<(), Error> {
        self.call_success(&Interface::RxRelease { vm_id: 0 })
            .map(drop)
    }

    /// FFA_PARTITION_INFO_GET: descriptors land in the RX buffer (read them with
    /// [`crate::PartitionInfo::iter`], then [`Self::rx_release`]) unless `count_only`.
    pub fn partition_info_get(
        &mut self,
        uuid: Uuid,
        count_only: bool,
    ) -> Result<PartitionCount, Error> {
        let a = self.call_success(&Interface::PartitionInfoGet {
            uuid,
            flags: PartitionInfoGetFlags { count_only },
        })?;
        Ok(PartitionCount {
            count: a.get(0) as u32,
            desc_size: a.get(1) as u32,
        })
    }

    /// FFA_PARTITION_INFO_GET_REGS: up to five descriptors from `start_index` (two of Hafnium's
    /// 48-byte ones).
    pub fn partition_info_get_regs(
        &mut self,
        uuid: Uuid,
        start_index: u16,
        tag: u16,
    ) -> Result<PartitionInfoRegs, Error> {
        let a = self.call_success(&Interface::PartitionInfoGetRegs {
            uuid,
            start_index,
            tag,
        })?;
        PartitionInfoRegs::from_success_args(&a, start_index).map_err(Error::BadPartitionInfo)
    }

    /// FFA_MSG_WAIT: returns the next message (a direct request, FFA_INTERRUPT, FFA_RUN...).
    pub fn msg_wait(&mut self, flags: MsgWaitFlags) -> Result<Interface, Error> {
        self.call(&Interface::MsgWait { flags })
    }

    /// FFA_MSG_SEND_DIRECT_REQ_32/64 (width from `args`); returns the response payload.
    pub fn direct_req(
        &mut self,
        src_id: PartitionId,
        dst_id: PartitionId,
        args: DirectMsgArgs,
    ) -> Result<DirectMsgArgs, Error> {
        let req = Interface::MsgSendDirectReq {
            src_id,
            dst_id,
            args,
        };
        match self.call(&req)? {
            Interface::MsgSendDirectResp { args, .. } => Ok(args),
            r => Err(Error::UnexpectedReply {
                request: req.func_id(),
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_MSG_SEND_DIRECT_RESP_32/64: answer the current request; returns the next message.
    pub fn direct_resp(
        &mut self,
        src_id: PartitionId,
        dst_id: PartitionId,
        args: DirectMsgArgs,
    ) -> Result<Interface, Error> {
        self.call(&Interface::MsgSendDirectResp {
            src_id,
            dst_id,
            args,
        })
    }

    /// FFA_MSG_SEND_DIRECT_REQ2 to service `uuid` of `dst_id`; returns the response payload.
    pub fn direct_req2(
        &mut self,
        src_id: PartitionId,
        dst_id: PartitionId,
        uuid: Uuid,
        args: DirectMsg2Args,
    ) -> Result<DirectMsg2Args, Error> {
        let req = Interface::MsgSendDirectReq2 {
            src_id,
            dst_id,
            uuid,
            args,
        };
        match self.call(&req)? {
            Interface::MsgSendDirectResp2 { args, .. } => Ok(args),
            r => Err(Error::UnexpectedReply {
                request: req.func_id(),
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_MSG_SEND_DIRECT_RESP2: answer the current request; returns the next message.
    pub fn direct_resp2(
        &mut self,
        src_id: PartitionId,
        dst_id: PartitionId,
        args: DirectMsg2Args,
    ) -> Result<Interface, Error> {
        self.call(&Interface::MsgSendDirectResp2 {
            src_id,
            dst_id,
            args,
        })
    }

    /// FFA_CONSOLE_LOG_64, split into 128-byte calls. Hafnium prints a line per '\n' (or when
    /// its buffer fills), prefixed with `[<id> <vcpu>]`.
    pub fn console_log(&mut self, s: &str) -> Result<(), Error> {
        self.console_log_bytes(s.as_bytes(), true)
    }

    /// FFA_CONSOLE_LOG_32, split into 24-byte calls.
    pub fn console_log32(&mut self, s: &str) -> Result<(), Error> {
        self.console_log_bytes(s.as_bytes(), false)
    }

    fn console_log_bytes(&mut self, bytes: &[u8], is_64: bool) -> Result<(), Error> {
        let max = if is_64 {
            ConsoleLogChars::MAX_64
        } else {
            ConsoleLogChars::MAX_32
        };
        for chunk in bytes.chunks(max) {
            let chars = if is_64 {
                ConsoleLogChars::new64(chunk)
            } else {
                ConsoleLogChars::new32(chunk)
            };
            // chunks() yields 1..=max bytes, so `chars` is always Some.
            if let Some(chars) = chars {
                self.call_success(&Interface::ConsoleLog { chars })?;
            }
        }
        Ok(())
    }

    /// FFA_SECONDARY_EP_REGISTER_64.
    pub fn secondary_ep_register(&mut self, entry: u64) -> Result<(), Error> {
        self.call_success(&Interface::SecondaryEpRegister {
            entrypoint: EntryPoint::Addr64(entry),
        })
        .map(drop)
    }

    /// FFA_RUN: give CPU time to `target_id`'s vCPU; returns how it came back.
    pub fn run(&mut self, target_id: PartitionId, vcpu_id: u16) -> Result<Interface, Error> {
        self.call(&Interface::Run { target_id, vcpu_id })
    }

    /// Hafnium's FFA_ABORT: the SPMC must not return; if it does, its reply is the error.
    pub fn abort(&mut self, code: u32) -> Error {
        match self.call(&Interface::Abort { code }) {
            Err(e) => e,
            Ok(r) => Error::UnexpectedReply {
                request: FuncId::Abort32,
                reply: r.func_id(),
            },
        }
    }

    fn mem_send_call(&mut self, req: Interface) -> Result<MemSendReply, Error> {
        match self.call(&req)? {
            Interface::Success { args, .. } => Ok(MemSendReply::Done(success_handle(&args))),
            Interface::MemFragRx {
                handle,
                frag_offset,
                ..
            } => Ok(MemSendReply::FragRx {
                handle,
                offset: frag_offset,
            }),
            r => Err(Error::UnexpectedReply {
                request: req.func_id(),
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_MEM_SHARE (descriptor already written to TX or `args.buf`).
    pub fn mem_share(&mut self, args: MemOpArgs) -> Result<MemSendReply, Error> {
        self.mem_send_call(Interface::MemShare(args))
    }

    /// FFA_MEM_LEND.
    pub fn mem_lend(&mut self, args: MemOpArgs) -> Result<MemSendReply, Error> {
        self.mem_send_call(Interface::MemLend(args))
    }

    /// FFA_MEM_DONATE.
    pub fn mem_donate(&mut self, args: MemOpArgs) -> Result<MemSendReply, Error> {
        self.mem_send_call(Interface::MemDonate(args))
    }

    /// FFA_MEM_FRAG_TX: send the next fragment of a memory send; the reply is again
    /// FRAG_RX (more wanted) or SUCCESS (done).
    pub fn mem_frag_tx(&mut self, handle: Handle, frag_len: u32) -> Result<MemSendReply, Error> {
        self.mem_send_call(Interface::MemFragTx {
            handle,
            frag_len,
            endpoint_id: 0,
        })
    }

    /// FFA_MEM_RETRIEVE_REQ: returns (total length, fragment length) of the retrieve
    /// response now in the RX buffer.
    pub fn mem_retrieve_req(&mut self, args: MemOpArgs) -> Result<(u32, u32), Error> {
        let req = Interface::MemRetrieveReq(args);
        match self.call(&req)? {
            Interface::MemRetrieveResp {
                total_len,
                frag_len,
            } => Ok((total_len, frag_len)),
            r => Err(Error::UnexpectedReply {
                request: req.func_id(),
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_MEM_FRAG_RX: ask for the next fragment of a retrieve response from `offset`;
    /// returns the fragment length (FFA_MEM_FRAG_TX w3) now in the RX buffer.
    pub fn mem_frag_rx(&mut self, handle: Handle, offset: u32) -> Result<u32, Error> {
        let req = Interface::MemFragRx {
            handle,
            frag_offset: offset,
            endpoint_id: 0,
        };
        match self.call(&req)? {
            Interface::MemFragTx { frag_len, .. } => Ok(frag_len),
            r => Err(Error::UnexpectedReply {
                request: req.func_id(),
                reply: r.func_id(),
            }),
        }
    }

    /// FFA_MEM_RELINQUISH (relinquish descriptor already in TX).
    pub fn mem_relinquish(&mut self) -> Result<(), Error> {
        self.call_success(&Interface::MemRelinquish).map(drop)
    }

    /// FFA_MEM_RECLAIM.
    pub fn mem_reclaim(&mut self, handle: Handle, flags: ReclaimFlags) -> Result<(), Error> {
        self.call_success(&Interface::MemReclaim { handle, flags })
            .map(drop)
    }
}

/// Access to this endpoint's mapped RX/TX buffers for the multi-call memory flows. The
/// buffers are shared with the partition manager, so the implementation copies with
/// volatile or otherwise non-elided accesses and never hands out references into them.
pub trait RxTxBuffers {
    /// Size of each buffer in bytes.
    fn size(&self) -> usize;
    /// Copy `data` to the start of the TX buffer (`data.len() <= size()`).
    fn write_tx(&mut self, data: &[u8]);
    /// Copy the first `out.len()` bytes of the RX buffer (`<= size()`) into `out`.
    fn read_rx(&mut self, out: &mut [u8]);
}

#[cfg(any(test, feature = "alloc"))]
mod mem_flows {
    extern crate alloc;

    use super::*;
    use crate::memory::{
        DescKind, FragmentAssembler, MemError, MemTransaction, ParseOptions, SendKind,
        plan_fragments,
    };
    use crate::{MemOpBuf, memory::COMPOSITE_HEADER_SIZE};

    impl From<MemError> for Error {
        fn from(e: MemError) -> Self {
            Self::Mem(e)
        }
    }

    impl<C: Conduit> Endpoint<C> {
        /// FFA_MEM_SHARE / LEND / DONATE of `desc` through the TX buffer, fragmenting with
        /// FFA_MEM_FRAG_TX when it does not fit one buffer. Returns the handle.
        pub fn mem_send(
            &mut self,
            kind: SendKind,
            desc: &MemTransaction,
            bufs: &mut impl RxTxBuffers,
        ) -> Result<Handle, Error> {
            let dk = DescKind::Send(kind);
            let bytes = desc.to_vec(dk)?;
            let total = u32::try_from(bytes.len()).map_err(|_| MemError::TooLarge)?;
            let size = bufs.size();
            let ranges_start = TRANSACTION_HEAD + desc.receivers.len() * desc.emad_size.bytes();
            let mut plan = plan_fragments(bytes.len(), ranges_start + COMPOSITE_HEADER_SIZE, size)
                .map_err(|_| Error::Buffer {
                    needed: ranges_start + COMPOSITE_HEADER_SIZE,
                    size,
                })?;
            let Some((_, first)) = plan.next() else {
                return Err(MemError::TooLarge.into());
            };
            bufs.write_tx(&bytes[..first]);
            let args = MemOpArgs {
                total_len: total,
                frag_len: first as u32,
                buf: MemOpBuf::Tx32,
            };
            let mut reply = match kind {
                SendKind::Share => self.mem_share(args),
                SendKind::Lend => self.mem_lend(args),
                SendKind::Donate => self.mem_donate(args),
            }?;
            loop {
                match reply {
                    MemSendReply::Done(h) => return Ok(h),
                    MemSendReply::FragRx { handle, offset } => {
                        // The SPMC names the offset it wants; it must be one we planned.
                        let Some((o, len)) = plan.next() else {
                            return Err(Error::UnexpectedReply {
                                request: FuncId::MemFragTx,
                                reply: FuncId::MemFragRx,
                            });
                        };
                        if o != offset as usize {
                            return Err(Error::UnexpectedReply {
                                request: FuncId::MemFragTx,
                                reply: FuncId::MemFragRx,
                            });
                        }
                        bufs.write_tx(&bytes[o..o + len]);
                        reply = self.mem_frag_tx(handle, len as u32)?;
                    }
                }
            }
        }

        /// FFA_MEM_RETRIEVE_REQ of `req` (see [`MemTransaction::retrieve_request`]) through
        /// the TX buffer; collects the response from the RX buffer (FFA_MEM_FRAG_RX for
        /// each further fragment, FFA_RX_RELEASE after each read), then parses it as
        /// hostile input. `max_total` bounds the response size the SPMC may announce.
        pub fn mem_retrieve(
            &mut self,
            req: &MemTransaction,
            bufs: &mut impl RxTxBuffers,
            max_total: usize,
        ) -> Result<MemTransaction, RetrieveError> {
            let not_held = |error: Error| RetrieveError {
                error,
                retrieved: false,
            };
            let bytes = req
                .to_vec(DescKind::RetrieveReq)
                .map_err(|e| not_held(e.into()))?;
            let size = bufs.size();
            if bytes.len() > size {
                return Err(not_held(Error::Buffer {
                    needed: bytes.len(),
                    size,
                }));
            }
            bufs.write_tx(&bytes);
            let len = bytes.len() as u32;
            let (total, frag) = self
                .mem_retrieve_req(MemOpArgs {
                    total_len: len,
                    frag_len: len,
                    buf: MemOpBuf::Tx32,
                })
                .map_err(not_held)?;
            self.gather_response(req, bufs, max_total, total, frag)
                .map_err(|error| RetrieveError {
                    error,
                    retrieved: true,
                })
        }

        /// The rest of a retrieve after RETRIEVE_RESP(total, frag): fragments, then parse.
        fn gather_response(
            &mut self,
            req: &MemTransaction,
            bufs: &mut impl RxTxBuffers,
            max_total: usize,
            total: u32,
            frag: u32,
        ) -> Result<MemTransaction, Error> {
            let size = bufs.size();
            let mut chunk = alloc::vec![0u8; size];
            let first = chunk.get_mut(..frag as usize).ok_or(Error::Buffer {
                needed: frag as usize,
                size,
            })?;
            bufs.read_rx(first);
            // Release RX before judging the data, so a bad response does not keep it.
            let asm = FragmentAssembler::new(total, first, max_total);
            self.rx_release()?;
            let mut asm = asm?;
            while !asm.is_complete() {
                let offset = asm.received() as u32;
                let n = self.mem_frag_rx(req.handle, offset)? as usize;
                let part = chunk
                    .get_mut(..n)
                    .ok_or(Error::Buffer { needed: n, size })?;
                bufs.read_rx(part);
                self.rx_release()?;
                asm.push(part)?;
            }
            let whole = asm.finish()?;
            let opts = ParseOptions {
                expected_sender: Some(req.sender_id),
                emad_size: None,
            };
            Ok(MemTransaction::parse(&whole, DescKind::RetrieveResp, opts)?)
        }
    }

    const TRANSACTION_HEAD: usize = crate::memory::TRANSACTION_HEADER_SIZE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::ScriptedConduit;
    use crate::{PartitionInfo, PartitionProperties};

    fn ok(v: u32) -> Interface {
        Interface::Success {
            target_info: 0,
            args: SuccessArgs::w2(v),
        }
    }

    fn err(code: FfaError) -> Interface {
        Interface::Error {
            target_info: 0,
            code,
        }
    }

    #[test]
    fn sp_boot_sequence() {
        let req = Interface::MsgSendDirectReq {
            src_id: 0,
            dst_id: 0x8001,
            args: DirectMsgArgs::Args32([7, 0, 0, 0, 0]),
        };
        let fake = ScriptedConduit::new()
            .expect(
                Interface::Version {
                    input: Version::V1_2,
                },
                Interface::VersionOut {
                    output: Version::V1_3,
                },
            )
            .expect(Interface::IdGet, ok(0x8001))
            .expect(Interface::SpmIdGet, ok(0x8000))
            .expect(
                Interface::RxTxMap {
                    addr: RxTxAddr::Addr64 {
                        tx: 0xe3f_e000,
                        rx: 0xe3f_f000,
                    },
                    page_count: RxTxPageCount::new(1).unwrap(),
                },
                ok(0),
            )
            .expect(
                Interface::Features {
                    feature_id: FuncId::MemRetrieveReq64 as u32,
                    input_properties: 2,
                },
                Interface::Success {
                    target_info: 0,
                    args: SuccessArgs::Args32([5, 6, 0, 0, 0, 0]),
                },
            )
            .expect(
                Interface::MsgWait {
                    flags: MsgWaitFlags::default(),
                },
                req,
            );
        let mut ep = Endpoint::new(fake);
        let v = ep.version(Version::V1_2).unwrap();
        assert_eq!(v, Version::V1_3);
        assert!(Version::V1_2.is_compatible_with(v));
        assert_eq!(ep.id_get(), Ok(0x8001));
        assert_eq!(ep.spm_id_get(), Ok(0x8000));
        ep.rxtx_map(0xe3f_e000, 0xe3f_f000, RxTxPageCount::new(1).unwrap())
            .unwrap();
        assert_eq!(ep.features(FuncId::MemRetrieveReq64 as u32, 2), Ok((5, 6)));
        assert_eq!(ep.msg_wait(MsgWaitFlags::default()), Ok(req));
        ep.conduit().assert_done();
    }

    #[test]
    fn version_not_supported() {
        let mut regs = [0u64; 18];
        regs[0] = 0xFFFF_FFFF;
        let fake = ScriptedConduit::new().expect_regs(
            Interface::Version {
                input: Version::V1_2,
            }
            .to_regs(),
            regs,
        );
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.version(Version::V1_2),
            Err(Error::Ffa(FfaError::NotSupported))
        );
    }

    #[test]
    fn errors_and_unexpected_replies() {
        let fake = ScriptedConduit::new()
            .expect(Interface::IdGet, err(FfaError::NotReady))
            .expect(Interface::SpmIdGet, Interface::Yield)
            .expect_regs(Interface::IdGet.to_regs(), {
                let mut r = [0; 18];
                r[0] = 0x8400_0060;
                r[2] = 0x1234;
                r
            });
        let mut ep = Endpoint::new(fake);
        assert_eq!(ep.id_get(), Err(Error::Ffa(FfaError::NotReady)));
        assert_eq!(
            ep.spm_id_get(),
            Err(Error::UnexpectedReply {
                request: FuncId::SpmIdGet,
                reply: FuncId::Yield
            })
        );
        assert_eq!(
            ep.id_get(),
            Err(Error::Decode(DecodeError::UnknownErrorCode(0x1234)))
        );
        ep.conduit().assert_done();
    }

    #[test]
    fn direct_messaging_both_sides() {
        let uuid = Uuid::from_cells([1, 2, 3, 4]);
        let p2 = DirectMsg2Args(core::array::from_fn(|i| i as u64));
        let r2 = DirectMsg2Args([0xAB; 14]);
        // Client side.
        let fake = ScriptedConduit::new()
            .expect(
                Interface::MsgSendDirectReq {
                    src_id: 0,
                    dst_id: 0x8001,
                    args: DirectMsgArgs::Args64([1, 2, 3, 4, 5]),
                },
                Interface::MsgSendDirectResp {
                    src_id: 0x8001,
                    dst_id: 0,
                    args: DirectMsgArgs::Args64([5, 4, 3, 2, 1]),
                },
            )
            .expect(
                Interface::MsgSendDirectReq2 {
                    src_id: 0,
                    dst_id: 0x8001,
                    uuid,
                    args: p2,
                },
                Interface::MsgSendDirectResp2 {
                    src_id: 0x8001,
                    dst_id: 0,
                    args: r2,
                },
            )
            .expect(
                Interface::MsgSendDirectReq {
                    src_id: 0,
                    dst_id: 0x8001,
                    args: DirectMsgArgs::Args32([0; 5]),
                },
                Interface::Interrupt {
                    target_info: 0,
                    interrupt_id: 5,
                },
            );
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.direct_req(0, 0x8001, DirectMsgArgs::Args64([1, 2, 3, 4, 5])),
            Ok(DirectMsgArgs::Args64([5, 4, 3, 2, 1]))
        );
        assert_eq!(ep.direct_req2(0, 0x8001, uuid, p2), Ok(r2));
        assert_eq!(
            ep.direct_req(0, 0x8001, DirectMsgArgs::Args32([0; 5])),
            Err(Error::UnexpectedReply {
                request: FuncId::MsgSendDirectReq32,
                reply: FuncId::Interrupt
            })
        );
        ep.conduit().assert_done();

        // SP side: each response returns the next request.
        let next = Interface::MsgSendDirectReq2 {
            src_id: 0,
            dst_id: 0x8001,
            uuid,
            args: p2,
        };
        let fake = ScriptedConduit::new()
            .expect(
                Interface::MsgSendDirectResp {
                    src_id: 0x8001,
                    dst_id: 0,
                    args: DirectMsgArgs::Args32([1, 0, 0, 0, 0]),
                },
                next,
            )
            .expect(
                Interface::MsgSendDirectResp2 {
                    src_id: 0x8001,
                    dst_id: 0,
                    args: r2,
                },
                err(FfaError::Denied),
            );
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.direct_resp(0x8001, 0, DirectMsgArgs::Args32([1, 0, 0, 0, 0])),
            Ok(next)
        );
        assert_eq!(
            ep.direct_resp2(0x8001, 0, r2),
            Err(Error::Ffa(FfaError::Denied))
        );
        ep.conduit().assert_done();
    }

    #[test]
    fn console_log_splits_long_strings() {
        let s: std::string::String = (0..300).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let b = s.as_bytes();
        let mut fake = ScriptedConduit::new();
        for chunk in [&b[..128], &b[128..256], &b[256..]] {
            fake.push(
                Interface::ConsoleLog {
                    chars: ConsoleLogChars::new64(chunk).unwrap(),
                },
                ok(0),
            );
        }
        for chunk in b[..50].chunks(24) {
            fake.push(
                Interface::ConsoleLog {
                    chars: ConsoleLogChars::new32(chunk).unwrap(),
                },
                ok(0),
            );
        }
        let mut ep = Endpoint::new(fake);
        ep.console_log(&s).unwrap();
        ep.console_log32(&s[..50]).unwrap();
        ep.console_log("").unwrap();
        assert_eq!(ep.conduit().calls(), 6);
        ep.conduit().assert_done();
    }

    #[test]
    fn partition_info_calls() {
        let info = PartitionInfo {
            id: 0x8001,
            exec_ctx_count: 1,
            properties: PartitionProperties(PartitionProperties::DIRECT_REQ_RECV),
            uuid: Uuid::from_cells([0x12345678, 0x9abcdef0, 0x11223344, 0x55667788]),
        };
        let regs_reply = PartitionInfoRegs::for_range(&[info], 0, 0).unwrap();
        let mut bad = regs_reply;
        bad.current_index = 3;
        let fake = ScriptedConduit::new()
            .expect(
                Interface::PartitionInfoGet {
                    uuid: Uuid::NIL,
                    flags: PartitionInfoGetFlags { count_only: false },
                },
                Interface::Success {
                    target_info: 0,
                    args: SuccessArgs::Args32([1, 24, 0, 0, 0, 0]),
                },
            )
            .expect(
                Interface::PartitionInfoGetRegs {
                    uuid: info.uuid,
                    start_index: 0,
                    tag: 0,
                },
                Interface::Success {
                    target_info: 0,
                    args: regs_reply.to_success_args(),
                },
            )
            .expect(
                Interface::PartitionInfoGetRegs {
                    uuid: info.uuid,
                    start_index: 0,
                    tag: 0,
                },
                Interface::Success {
                    target_info: 0,
                    args: bad.to_success_args(),
                },
            )
            .expect(Interface::RxRelease { vm_id: 0 }, ok(0));
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.partition_info_get(Uuid::NIL, false),
            Ok(PartitionCount {
                count: 1,
                desc_size: 24
            })
        );
        assert_eq!(
            ep.partition_info_get_regs(info.uuid, 0, 0)
                .unwrap()
                .entries(),
            &[info]
        );
        assert!(matches!(
            ep.partition_info_get_regs(info.uuid, 0, 0),
            Err(Error::BadPartitionInfo(_))
        ));
        ep.rx_release().unwrap();
        ep.conduit().assert_done();
    }

    #[test]
    fn memory_calls() {
        let args = MemOpArgs {
            total_len: 8192,
            frag_len: 4096,
            buf: crate::MemOpBuf::Tx32,
        };
        let h = Handle(0x8000_0000_0000_0001);
        let (lo, hi) = h.halves();
        let fake = ScriptedConduit::new()
            .expect(
                Interface::MemShare(args),
                Interface::MemFragRx {
                    handle: h,
                    frag_offset: 4096,
                    endpoint_id: 0,
                },
            )
            .expect(
                Interface::MemFragTx {
                    handle: h,
                    frag_len: 4096,
                    endpoint_id: 0,
                },
                Interface::Success {
                    target_info: 0,
                    args: SuccessArgs::Args32([lo, hi, 0, 0, 0, 0]),
                },
            )
            .expect(
                Interface::MemRetrieveReq(args),
                Interface::MemRetrieveResp {
                    total_len: 8192,
                    frag_len: 4096,
                },
            )
            .expect(
                Interface::MemFragRx {
                    handle: h,
                    frag_offset: 4096,
                    endpoint_id: 0,
                },
                Interface::MemFragTx {
                    handle: h,
                    frag_len: 4096,
                    endpoint_id: 0,
                },
            )
            .expect(Interface::MemRelinquish, ok(0))
            .expect(
                Interface::MemReclaim {
                    handle: h,
                    flags: ReclaimFlags {
                        zero_memory: true,
                        time_slicing: false,
                    },
                },
                err(FfaError::Denied),
            )
            .expect(Interface::MemLend(args), Interface::IdGet);
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.mem_share(args),
            Ok(MemSendReply::FragRx {
                handle: h,
                offset: 4096
            })
        );
        assert_eq!(ep.mem_frag_tx(h, 4096), Ok(MemSendReply::Done(h)));
        assert_eq!(ep.mem_retrieve_req(args), Ok((8192, 4096)));
        assert_eq!(ep.mem_frag_rx(h, 4096), Ok(4096));
        ep.mem_relinquish().unwrap();
        assert_eq!(
            ep.mem_reclaim(
                h,
                ReclaimFlags {
                    zero_memory: true,
                    time_slicing: false
                }
            ),
            Err(Error::Ffa(FfaError::Denied))
        );
        assert!(matches!(
            ep.mem_lend(args),
            Err(Error::UnexpectedReply { .. })
        ));
        ep.conduit().assert_done();
    }

    #[test]
    fn abort_and_run() {
        let fake = ScriptedConduit::new()
            .expect(
                Interface::Run {
                    target_id: 0x8001,
                    vcpu_id: 0,
                },
                Interface::MsgWait {
                    flags: MsgWaitFlags::default(),
                },
            )
            .expect(Interface::Abort { code: 3 }, err(FfaError::NotSupported));
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.run(0x8001, 0),
            Ok(Interface::MsgWait {
                flags: MsgWaitFlags::default()
            })
        );
        assert_eq!(ep.abort(3), Error::Ffa(FfaError::NotSupported));
        ep.conduit().assert_done();
    }

    /// RX/TX buffers for the memory flows: TX writes are recorded, RX reads pop prepared
    /// contents.
    struct Bufs {
        size: usize,
        tx: std::vec::Vec<std::vec::Vec<u8>>,
        rx: std::collections::VecDeque<std::vec::Vec<u8>>,
    }

    impl RxTxBuffers for Bufs {
        fn size(&self) -> usize {
            self.size
        }
        fn write_tx(&mut self, data: &[u8]) {
            assert!(data.len() <= self.size);
            self.tx.push(data.to_vec());
        }
        fn read_rx(&mut self, out: &mut [u8]) {
            let next = self
                .rx
                .pop_front()
                .expect("RX read without prepared content");
            assert_eq!(out.len(), next.len(), "RX read length");
            out.copy_from_slice(&next);
        }
    }

    fn many_ranges(n: u64) -> crate::memory::MemTransaction {
        use crate::memory::*;
        MemTransaction {
            sender_id: 0,
            attributes: MemRegionAttributes::NORMAL_WB_INNER,
            flags: MemFlags(0),
            handle: Handle(0),
            tag: 0,
            emad_size: EmadSize::V1_2,
            receivers: std::vec![Emad::new(MemAccessPerm {
                endpoint_id: 0x8001,
                data_access: DataAccess::ReadWrite,
                instruction_access: InstructionAccess::NotSpecified,
                non_retrieval_borrower: false,
            })],
            ranges: (0..n)
                .map(|i| MemRange {
                    address: 0x4000_0000 + i * 0x2000,
                    page_count: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn mem_send_fragments_through_tx() {
        use crate::memory::{DescKind, SendKind};
        let desc = many_ranges(300); // 4896 bytes: two 4 KiB fragments
        let bytes = desc.to_vec(DescKind::Send(SendKind::Lend)).unwrap();
        let h = Handle(0x8000_0000_0000_0009);
        let (lo, hi) = h.halves();
        let fake = ScriptedConduit::new()
            .expect(
                Interface::MemLend(MemOpArgs {
                    total_len: 4896,
                    frag_len: 4096,
                    buf: crate::MemOpBuf::Tx32,
                }),
                Interface::MemFragRx {
                    handle: h,
                    frag_offset: 4096,
                    endpoint_id: 0,
                },
            )
            .expect(
                Interface::MemFragTx {
                    handle: h,
                    frag_len: 800,
                    endpoint_id: 0,
                },
                Interface::Success {
                    target_info: 0,
                    args: SuccessArgs::Args32([lo, hi, 0, 0, 0, 0]),
                },
            );
        let mut bufs = Bufs {
            size: 4096,
            tx: std::vec![],
            rx: Default::default(),
        };
        let mut ep = Endpoint::new(fake);
        assert_eq!(ep.mem_send(SendKind::Lend, &desc, &mut bufs), Ok(h));
        assert_eq!(bufs.tx.concat(), bytes);
        ep.conduit().assert_done();

        // An SPMC asking for an offset we did not plan is an error, not a wrong send.
        let fake = ScriptedConduit::new().expect(
            Interface::MemShare(MemOpArgs {
                total_len: 4896,
                frag_len: 4096,
                buf: crate::MemOpBuf::Tx32,
            }),
            Interface::MemFragRx {
                handle: h,
                frag_offset: 100,
                endpoint_id: 0,
            },
        );
        let mut ep = Endpoint::new(fake);
        assert!(matches!(
            ep.mem_send(SendKind::Share, &desc, &mut bufs),
            Err(Error::UnexpectedReply { .. })
        ));
    }

    #[test]
    fn mem_retrieve_collects_fragments() {
        use crate::memory::*;
        let h = Handle(0x8000_0000_0000_0009);
        let perm = MemAccessPerm {
            endpoint_id: 0x8001,
            data_access: DataAccess::ReadWrite,
            instruction_access: InstructionAccess::NotExecutable,
            non_retrieval_borrower: false,
        };
        let req =
            MemTransaction::retrieve_request(h, 0, perm, TransactionType::Lend, 0, EmadSize::V1_2);
        let sent = many_ranges(300);
        let resp = MemTransaction::retrieve_response(
            &sent,
            h,
            TransactionType::Lend,
            perm,
            true,
            EmadSize::V1_2,
        );
        let rb = resp.to_vec(DescKind::RetrieveResp).unwrap();
        let fake = ScriptedConduit::new()
            .expect(
                Interface::MemRetrieveReq(MemOpArgs {
                    total_len: 80,
                    frag_len: 80,
                    buf: crate::MemOpBuf::Tx32,
                }),
                Interface::MemRetrieveResp {
                    total_len: 4896,
                    frag_len: 4096,
                },
            )
            .expect(Interface::RxRelease { vm_id: 0 }, ok(0))
            .expect(
                Interface::MemFragRx {
                    handle: h,
                    frag_offset: 4096,
                    endpoint_id: 0,
                },
                Interface::MemFragTx {
                    handle: h,
                    frag_len: 800,
                    endpoint_id: 0,
                },
            )
            .expect(Interface::RxRelease { vm_id: 0 }, ok(0));
        let mut bufs = Bufs {
            size: 4096,
            tx: std::vec![],
            rx: [rb[..4096].to_vec(), rb[4096..].to_vec()].into(),
        };
        let mut ep = Endpoint::new(fake);
        let got = ep.mem_retrieve(&req, &mut bufs, 1 << 20).unwrap();
        assert_eq!(got, resp);
        assert_eq!(
            bufs.tx,
            std::vec![req.to_vec(DescKind::RetrieveReq).unwrap()]
        );
        ep.conduit().assert_done();

        // A hostile response: RX is still released, the defect is reported.
        let mut bad = rb[..4096].to_vec();
        bad[40] = 1; // reserved header byte
        let fake = ScriptedConduit::new()
            .expect(
                Interface::MemRetrieveReq(MemOpArgs {
                    total_len: 80,
                    frag_len: 80,
                    buf: crate::MemOpBuf::Tx32,
                }),
                Interface::MemRetrieveResp {
                    total_len: 4096,
                    frag_len: 4096,
                },
            )
            .expect(Interface::RxRelease { vm_id: 0 }, ok(0));
        let mut bufs = Bufs {
            size: 4096,
            tx: std::vec![],
            rx: [bad].into(),
        };
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.mem_retrieve(&req, &mut bufs, 1 << 20),
            Err(RetrieveError {
                error: Error::Mem(MemError::ReservedNotZero { offset: 40 }),
                retrieved: true,
            })
        );
        ep.conduit().assert_done();

        // A fragment length larger than the RX buffer.
        let fake = ScriptedConduit::new().expect(
            Interface::MemRetrieveReq(MemOpArgs {
                total_len: 80,
                frag_len: 80,
                buf: crate::MemOpBuf::Tx32,
            }),
            Interface::MemRetrieveResp {
                total_len: 8192,
                frag_len: 8192,
            },
        );
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.mem_retrieve(&req, &mut bufs, 1 << 20),
            Err(RetrieveError {
                error: Error::Buffer {
                    needed: 8192,
                    size: 4096
                },
                retrieved: true,
            })
        );

        // Refused by the SPMC: nothing is held.
        let fake = ScriptedConduit::new().expect(
            Interface::MemRetrieveReq(MemOpArgs {
                total_len: 80,
                frag_len: 80,
                buf: crate::MemOpBuf::Tx32,
            }),
            err(FfaError::InvalidParameters),
        );
        let mut ep = Endpoint::new(fake);
        assert_eq!(
            ep.mem_retrieve(&req, &mut bufs, 1 << 20),
            Err(RetrieveError {
                error: Error::Ffa(FfaError::InvalidParameters),
                retrieved: false,
            })
        );
    }

    #[test]
    #[should_panic(expected = "mismatch")]
    fn fake_reports_mismatch() {
        let mut ep = Endpoint::new(ScriptedConduit::new().expect(Interface::IdGet, ok(1)));
        let _ = ep.spm_id_get();
    }

    #[test]
    #[should_panic(expected = "never made")]
    fn fake_reports_unconsumed_steps() {
        ScriptedConduit::new()
            .expect(Interface::IdGet, ok(1))
            .assert_done();
    }
}
