//! Placeholder; built for aarch64-unknown-none by `cargo xtask`.
#![no_std]
#![no_main]

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
