//! The flexserve Linux module's user-space interface, `/dev/flexserve`, mirrored from
//! `nw/linux/flexserve_uapi.h`: the ioctl numbers and their `#[repr(C)]` argument structs.
//!
//! The header is the source of truth. The tests compile C that checks every size, offset and
//! number here against it (`cc`, and `aarch64-linux-gnu-gcc` when it is installed), and parse the
//! header so that nothing it declares is missing here. Field meanings are documented there.
//!
//! The tests also build the module's descriptor writer (`nw/linux/flexserve_desc.h`) on the
//! host and parse what it writes with `ffa::memory::MemTransaction::parse`, the project's own
//! hostile-input parser, for share and lend, both EMAD sizes and both access permissions.
#![no_std]

use core::mem::size_of;

/// The ioctl type byte.
pub const IOC_MAGIC: u8 = 0xF5;
/// Most pages one buffer can have.
pub const MAX_PAGES: u32 = 1 << 18;
/// [`MemSend::kind`]: FF-A transaction types.
pub const SHARE: u8 = 1;
pub const LEND: u8 = 2;
/// [`MemSend::access`]: FF-A data access permissions.
pub const RO: u8 = 1;
pub const RW: u8 = 2;

/// `struct flexserve_info`: what the module negotiated at load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub ffa_version: u32,
    pub rxtx_size: u32,
    pub own_id: u16,
    pub reserved0: u16,
    pub reserved1: u32,
}

/// `struct flexserve_ffa_call`: x0-x17 in and out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FfaCall {
    pub x: [u64; 18],
}

/// `struct flexserve_buf_copy`: `len` bytes at `offset` of RX or TX, from or to `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufCopy {
    pub addr: u64,
    pub offset: u32,
    pub len: u32,
}

/// `struct flexserve_alloc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Alloc {
    pub pages: u32,
    pub id: u32,
    pub mmap_offset: u64,
}

/// `struct flexserve_mem_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemSend {
    pub id: u32,
    pub receiver: u16,
    pub kind: u8,
    pub access: u8,
    pub handle: u64,
    pub ffa_error: i32,
    pub reserved: u32,
}

/// `struct flexserve_mem_reclaim`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemReclaim {
    pub handle: u64,
    pub ffa_error: i32,
    pub reserved: u32,
}

/// Linux's `_IOC` (asm-generic layout, which arm64 uses): dir [31:30], size [29:16],
/// type [15:8], nr [7:0].
const fn ioc(dir: u32, nr: u8, size: usize) -> u32 {
    assert!(size < 1 << 14);
    dir << 30 | (size as u32) << 16 | (IOC_MAGIC as u32) << 8 | nr as u32
}
const WRITE: u32 = 1;
const READ: u32 = 2;

pub const IOC_INFO: u32 = ioc(READ, 0, size_of::<Info>());
pub const IOC_FFA_CALL: u32 = ioc(READ | WRITE, 1, size_of::<FfaCall>());
pub const IOC_READ_RX: u32 = ioc(WRITE, 2, size_of::<BufCopy>());
pub const IOC_WRITE_TX: u32 = ioc(WRITE, 3, size_of::<BufCopy>());
pub const IOC_ALLOC: u32 = ioc(READ | WRITE, 4, size_of::<Alloc>());
/// The argument is a pointer to the buffer id (`u32`).
pub const IOC_FREE: u32 = ioc(WRITE, 5, size_of::<u32>());
pub const IOC_MEM_SEND: u32 = ioc(READ | WRITE, 6, size_of::<MemSend>());
pub const IOC_MEM_RECLAIM: u32 = ioc(READ | WRITE, 7, size_of::<MemReclaim>());

#[cfg(test)]
mod tests;
