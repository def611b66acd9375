//! AES-256-GCM as the partition uses it (one 16-byte tag per chunk, in place), for
//! `cargo xtask bench sealed`:
//!
//! - `gcm host`: host throughput of encrypt and decrypt+verify over 64 MiB in 4 MiB chunks
//!   (the whole package path, with parsing and copies, is what `flexserve seal`/`verify` time);
//! - `gcm decrypt BYTES REPS`: encrypts BYTES once, then decrypts and verifies them REPS times
//!   (run under qemu-aarch64 with two REPS values: the difference is REPS decryptions).
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use std::time::Instant;

const KEY: [u8; 32] = [0x42; 32];

fn cipher() -> Aes256Gcm {
    Aes256Gcm::new((&KEY).into())
}

fn nonce(i: u32) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&i.to_le_bytes());
    n.into()
}

fn decrypt(bytes: usize, reps: usize) {
    let c = cipher();
    let mut buf: Vec<u8> = (0..bytes).map(|i| (i * 7) as u8).collect();
    let tag = c
        .encrypt_in_place_detached(&nonce(0), b"aad", &mut buf)
        .expect("encrypt");
    let sealed = buf.clone();
    for _ in 0..reps {
        buf.copy_from_slice(&sealed);
        c.decrypt_in_place_detached(&nonce(0), b"aad", &mut buf, &tag)
            .expect("authentic");
    }
    println!("{}", buf[bytes / 2]);
}

fn best_gbs(bytes: usize, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            bytes as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn host() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 4 << 20;
    let c = cipher();
    let mut data = vec![0x5au8; TOTAL];
    let mut tags = Vec::new();
    let enc = best_gbs(TOTAL, || {
        tags.clear();
        for (i, ch) in data.chunks_mut(CHUNK).enumerate() {
            tags.push(
                c.encrypt_in_place_detached(&nonce(i as u32), b"", ch)
                    .expect("encrypt"),
            );
        }
    });
    // Decrypt what the last encryption produced, re-encrypting between rounds (untimed).
    let mut dec = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        for (i, ch) in data.chunks_mut(CHUNK).enumerate() {
            c.decrypt_in_place_detached(&nonce(i as u32), b"", ch, &tags[i])
                .expect("authentic");
        }
        dec = dec.max(TOTAL as f64 / t.elapsed().as_secs_f64() / 1e9);
        tags.clear();
        for (i, ch) in data.chunks_mut(CHUNK).enumerate() {
            tags.push(
                c.encrypt_in_place_detached(&nonce(i as u32), b"", ch)
                    .expect("encrypt"),
            );
        }
    }
    println!("gcm_encrypt_gbs {enc:.3}");
    println!("gcm_decrypt_gbs {dec:.3}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("host") => host(),
        Some("decrypt") => {
            let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16384);
            let reps = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            decrypt(n, reps)
        }
        _ => {
            eprintln!("usage: gcm host | gcm decrypt BYTES REPS");
            std::process::exit(2);
        }
    }
}
