//! `make_seed DIR`: writes seed packages for the `package` target.

use flexserve_sealed::{DeviceSecret, SealParams, seal};
use llm_runtime::gguf_write::GgufWriter;
use rand_core::{CryptoRng, RngCore};

struct Counter(u8);
impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        for b in d {
            self.0 = self.0.wrapping_mul(167).wrapping_add(13);
            *b = self.0;
        }
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(d);
        Ok(())
    }
}
impl CryptoRng for Counter {}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: make_seed DIR");
    std::fs::create_dir_all(&dir).expect("create dir");
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama");
    w.tensor_f32("token_embd.weight", &[8, 4], &[0.5; 32]);
    for l in 0..3 {
        w.tensor_f32(&format!("blk.{l}.attn_norm.weight"), &[8], &[1.0; 8]);
        w.tensor_f32(&format!("blk.{l}.ffn_up.weight"), &[8, 8], &[0.25; 64]);
    }
    w.tensor_f32("output_norm.weight", &[8], &[1.0; 8]);
    let gguf = w.finish();
    let dev = DeviceSecret::from_bytes([7; 32]).public_key();
    for (i, (max, signed)) in [(64u32, false), (4096, false), (100, true)].into_iter().enumerate() {
        let owner = ed25519_dalek_key();
        let pkg = seal(
            &gguf,
            &SealParams {
                model_id: [i as u8; 32],
                package_version: i as u64,
                max_chunk_len: max,
                recipients: &[dev],
                owner: signed.then_some(&owner),
            },
            &mut Counter(i as u8),
        )
        .expect("seal");
        std::fs::write(format!("{dir}/seed{i}.fsm"), pkg).expect("write");
    }
}

fn ed25519_dalek_key() -> flexserve_sealed::OwnerKey {
    flexserve_sealed::OwnerKey::from_bytes(&[3; 32])
}
