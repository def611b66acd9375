//! The FlexServe secure partition: the parts that do not touch hardware, so that they build and
//! run their tests on the host. The bare-metal entry, vectors, MMU switch and FF-A loop are in
//! `main.rs` (aarch64-unknown-none only).
//!
//! - [`ec`]: execution contexts: UP or MP, the secondary ECs' stacks, the secondary entry's
//!   contract.
//! - [`flexmem`]: Flex-Mem: lent regions switched to secure memory behind a memory firewall
//!   (`tzasc`) and back, scrubbed.
//! - [`manifest`]: the SP's FF-A manifest (read from the boot info), validated once.
//! - [`memmap`]: what the runtime page table maps, by intent, and the page table built from it.
//! - [`messaging`]: the FF-A message loop as a step function (registers in, next call out).
//! - [`sealed`]: sealed models: device keys, loading a package into secure memory, attestation.
//! - [`serve`]: model serving (load a lent GGUF, generate, unload) with `llm-runtime`.
//! - [`service`]: the FlexServe command dispatcher (`flexserve-proto` requests in, replies out).
//! - [`shmem`]: memory regions retrieved from FF-A memory transactions, mapped and accessed
//!   through checked views.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod ec;
pub mod flexmem;
pub mod flexnpu;
pub mod manifest;
pub mod memmap;
pub mod messaging;
pub mod sealed;
pub mod serve;
pub mod service;
pub mod shmem;

/// The build id reported by `info` (first 8 hex digits of the commit, 0 if unknown).
pub const BUILD_ID: u32 = parse_hex_u32(env!("FLEXSERVE_BUILD_ID"));

/// This crate's version as `major << 16 | minor << 8 | patch`.
pub const SP_VERSION: u32 = {
    let major = parse_dec_u32(env!("CARGO_PKG_VERSION_MAJOR"));
    let minor = parse_dec_u32(env!("CARGO_PKG_VERSION_MINOR"));
    let patch = parse_dec_u32(env!("CARGO_PKG_VERSION_PATCH"));
    major << 16 | minor << 8 | patch
};

const fn parse_hex_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() && i < 8 {
        let d = match b[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => return 0,
        };
        v = v << 4 | d as u32;
        i += 1;
    }
    v
}

const fn parse_dec_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn number_parsing() {
        assert_eq!(super::parse_hex_u32("2b5abfe1"), 0x2b5a_bfe1);
        assert_eq!(super::parse_hex_u32("zz"), 0);
        assert_eq!(super::parse_dec_u32("123"), 123);
    }
}
