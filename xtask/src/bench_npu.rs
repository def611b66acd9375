//! `cargo xtask bench npu`: the testbed NPU next to the CPU kernel on the same Q8_0 shape, the
//! secure job's overlap with the SP's CPU work, and the Flex-NPU switch latency both ways, from
//! `RUNS` boots of the `flexnpu` scenario (its `bench flexnpu:` line). All times are QEMU guest
//! time (CNTPCT): the emulated NPU is a CPU of the testbed running the device model, so its
//! speed says what the testbed can overlap, not what an RKNPU does.

use crate::{Result, images, qemu};
use std::time::Duration;

const RUNS: usize = 3;
const KEYS: [&str; 9] = [
    "ns_npu_us",
    "ns_cpu_us",
    "secure_npu_us",
    "secure_cpu_us",
    "overlap_us",
    "to_secure_us",
    "to_secure_round_us",
    "to_normal_us",
    "to_normal_round_us",
];

/// The figures of one `bench flexnpu:` line, in `KEYS` order.
fn parse(line: &str) -> Option<[u64; 9]> {
    let rest = line.trim().strip_prefix("bench flexnpu:")?;
    let mut out = [0u64; 9];
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let i = KEYS.iter().position(|&key| key == k)?;
        out[i] = v.parse().ok()?;
    }
    Some(out)
}

pub fn run() -> Result<()> {
    let inputs = images::NwInputs {
        model: None,
        sealed: None,
    };
    let flash = images::build_flash("flexnpu", &[], &inputs)?;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        eprintln!("xtask: bench npu: boot {}/{RUNS}", i + 1);
        let out = qemu::run(
            &flash,
            &inputs,
            testbed_layout::cpus::DEFAULT,
            Duration::from_secs(600),
            false,
        )?;
        out.verdict(false, true)
            .map_err(|e| format!("flexnpu: {e}"))?;
        let f = out
            .lines
            .iter()
            .find_map(|l| parse(l))
            .ok_or("flexnpu printed no `bench flexnpu:` line")?;
        runs.push(f);
    }
    let mean = |i: usize| runs.iter().map(|r| r[i]).sum::<u64>() as f64 / runs.len() as f64;
    let best = |i: usize| runs.iter().map(|r| r[i]).min().unwrap_or(0);
    println!("Flex-NPU on the QEMU testbed ({RUNS} boots; guest time, us; best / mean)");
    println!("Q8_0 8x256x512 (M x N x K)");
    println!(
        "  testbed NPU (normal world's job)   {:>7} / {:>9.0}",
        best(0),
        mean(0)
    );
    println!(
        "  CPU kernel (client, same shape)    {:>7} / {:>9.0}   NPU/CPU time ratio {:.2}",
        best(1),
        mean(1),
        mean(0) / mean(1).max(1.0)
    );
    println!(
        "  secure job on the NPU (SP)         {:>7} / {:>9.0}",
        best(2),
        mean(2)
    );
    println!(
        "  SP CPU work meanwhile (reference)  {:>7} / {:>9.0}   both running {:.0} us = {:.0}% \
         of the NPU job",
        best(3),
        mean(3),
        mean(4),
        100.0 * mean(4) / mean(2).max(1.0)
    );
    println!("Switch (inside the SP / as the normal world sees it)");
    println!("  to secure     {:>7.0} / {:>7.0}", mean(5), mean(6));
    println!("  to normal     {:>7.0} / {:>7.0}", mean(7), mean(8));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scenario_line() {
        let l = "  bench flexnpu: ns_npu_us=6263 ns_cpu_us=4808 secure_npu_us=8314 \
                 secure_cpu_us=4549 overlap_us=4549 to_secure_us=900 to_secure_round_us=1350 \
                 to_normal_us=1025 to_normal_round_us=1350";
        assert_eq!(
            parse(l),
            Some([6263, 4808, 8314, 4549, 4549, 900, 1350, 1025, 1350])
        );
        assert_eq!(parse("  bench flexnpu: nope=1"), None);
        assert_eq!(parse("PASS x"), None);
    }
}
