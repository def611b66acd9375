//! FF-A endpoint library for FlexServe-RS.
//!
//! Everything the SP, the testbed SPMC and the normal-world test client need to speak
//! Arm FF-A (v1.2 register conventions; this project declares `ffa-version = 1.2`):
//!
//! - [`FuncId`], [`FfaError`] (including `NOT_READY` = -10), [`Version`], [`Uuid`];
//! - [`Interface`]: every call and reply as data, with [`Interface::from_regs`] /
//!   [`Interface::to_regs`] over x0-x17 (see the [`interface`] module doc for masking, MBZ
//!   and how to decode FFA_VERSION's reply);
//! - [`partition_info`]: partition info descriptors and the GET_REGS reply;
//! - [`boot_info`]: a hostile-safe parser and a builder for the boot-info blob;
//! - `memory` (feature `alloc`): memory transaction, retrieve and relinquish descriptors,
//!   builder and hostile-safe parser, fragment assembly;
//! - [`Conduit`] (`Smc`, `Hvc` on aarch64; [`fake::ScriptedConduit`] for host tests) and
//!   the [`Endpoint`] call layer.
//!
//! # Why hand-written instead of arm-ffa 0.5
//! (research/platform-facts.md sec. 1.4 and 2.1)
//! - arm-ffa packs and unpacks only 16-byte (v1.1) endpoint memory access descriptors,
//!   while Hafnium sends 32-byte ones to v1.2+ SPs;
//! - its `pack()` always writes a non-zero composite offset, which Hafnium rejects in a
//!   retrieve request;
//! - it lacks `NOT_READY` (-10) and Hafnium's `FFA_ABORT`;
//! - its `Interface` admits unencodable values, so `to_regs` can panic; here every field
//!   with a narrower wire range is a validated newtype ([`Version`], [`RxTxPageCount`],
//!   [`ConsoleLogChars`]) and `to_regs` is total.
//!
//! The crate is `no_std` (the `memory` module and the `fake` conduit need `alloc`, behind
//! the `alloc` / `fake` features), has no dependencies, and contains one `unsafe` block
//! (the SMC/HVC instruction).
#![cfg_attr(not(test), no_std)]

pub mod boot_info;
mod conduit;
pub mod endpoint;
mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod func_id;
pub mod interface;
#[cfg(any(test, feature = "alloc"))]
pub mod memory;
pub mod partition_info;
mod uuid;
mod version;

pub use conduit::Conduit;
#[cfg(target_arch = "aarch64")]
pub use conduit::{Hvc, Smc};
pub use endpoint::{Endpoint, Error, MemSendReply, PartitionCount, RetrieveError, RxTxBuffers};
pub use error::{DecodeError, FfaError};
pub use func_id::FuncId;
pub use interface::{
    ConsoleLogChars, DirectMsg2Args, DirectMsgArgs, EntryPoint, Handle, Interface, MemOpArgs,
    MemOpBuf, MsgWaitFlags, PartitionId, PartitionInfoGetFlags, REG_COUNT, ReclaimFlags, Regs,
    RxTxAddr, RxTxPageCount, SuccessArgs,
};
pub use partition_info::{BufferTooSmall, PartitionInfo, PartitionInfoRegs, PartitionProperties};
pub use uuid::Uuid;
pub use version::Version;

/// FF-A's page size for page counts in calls and descriptors, whatever the granule.
pub const PAGE_SIZE: usize = 4096;

/// The SPMC's endpoint ID (Hafnium `HF_SPMC_VM_ID`).
pub const SPMC_ID: PartitionId = 0x8000;
