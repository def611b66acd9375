//! `flexserve`: the normal-world host tool for sealed model packages.
//!
//! ```text
//! flexserve keygen -o DEVICE                  DEVICE.key (root secret), DEVICE.pub (X25519),
//!                                             DEVICE.attest.pub (Ed25519) for test devices
//! flexserve seal --model M.gguf --to DEVICE.pub [--to ...] -o M.fsm
//!                [--model-id HEX64] [--version N] [--max-chunk BYTES]
//! flexserve inspect M.fsm                     header, chunks, recipients; no key needed
//! flexserve verify M.fsm --key DEVICE.key [--model M.gguf]
//! flexserve attest-verify REPORT --device DEVICE.attest.pub --nonce HEX64 [--package M.fsm]
//! ```

mod args;
mod commands;
mod keys;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv) {
        Err(e) => {
            eprintln!("flexserve: {e}\n\n{}", args::USAGE);
            ExitCode::from(2)
        }
        Ok(cmd) => match commands::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flexserve: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
