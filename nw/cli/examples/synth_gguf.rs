//! Writes a synthetic GGUF for throughput measurements:
//! `cargo run --release -p flexserve-cli --example synth_gguf -- OUT.gguf LAYERS MIB_PER_LAYER`.

use llm_runtime::gguf_write::GgufWriter;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, layers, mib] = args.as_slice() else {
        eprintln!("usage: synth_gguf OUT.gguf LAYERS MIB_PER_LAYER");
        std::process::exit(2);
    };
    let (layers, mib): (u32, u64) = match (layers.parse(), mib.parse()) {
        (Ok(l), Ok(m)) => (l, m),
        _ => {
            eprintln!("synth_gguf: LAYERS and MIB_PER_LAYER must be numbers");
            std::process::exit(2);
        }
    };
    // Two f32 tensors per layer, filled with a cheap pattern (AES does not care).
    let half = (mib << 20) / 8;
    let rows = 1024u64;
    let cols = half / rows;
    let data = |seed: u32| -> Vec<u8> {
        (0..rows * cols * 4)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8)
            .collect()
    };
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "synthetic");
    w.tensor("token_embd.weight", &[cols, rows], 0, &data(1));
    for l in 0..layers {
        w.tensor(
            &format!("blk.{l}.attn_q.weight"),
            &[cols, rows],
            0,
            &data(2 * l),
        );
        w.tensor(
            &format!("blk.{l}.ffn_up.weight"),
            &[cols, rows],
            0,
            &data(2 * l + 1),
        );
    }
    w.tensor(
        "output_norm.weight",
        &[cols],
        0,
        &data(7)[..cols as usize * 4],
    );
    if let Err(e) = std::fs::write(out, w.finish()) {
        eprintln!("synth_gguf: cannot write {out}: {e}");
        std::process::exit(1);
    }
}
