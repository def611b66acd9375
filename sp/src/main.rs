//! The FlexServe SP image. The bare-metal entry lives in `rt` (aarch64-unknown-none only); on the
//! host this binary is empty so that `cargo test` can build the crate.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod rt;
#[cfg(target_os = "none")]
mod rt_flexmem;
#[cfg(target_os = "none")]
mod rt_npu;

#[cfg(not(target_os = "none"))]
fn main() {}
