//! The forward pass's offload hook (`kernels::MatmulOffload`): a device that takes the V
//! projection of prefill batches gets exactly those, its results are used, and a device that
//! declines or fails changes nothing (the CPU computes the product: the same logits bit for
//! bit as a run without a device).

use std::sync::{Arc, Mutex};

use llm_runtime::gguf::Gguf;
use llm_runtime::kernels::{BlockQ8_0, Kernels, MatmulOffload, OffloadError};
use llm_runtime::model::{self, Model, ModelOptions};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fortunes-q8_0.gguf");

/// A fake device: computes with the scalar kernel at `finish` (as the testbed NPU's results
/// equal it), or declines, or fails; counts what it was given.
struct Fake {
    mode: Mode,
    pending: Option<(Vec<BlockQ8_0>, Vec<BlockQ8_0>, usize)>,
    log: Arc<Mutex<Vec<(usize, usize)>>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Compute,
    Decline,
    Fail,
}

impl MatmulOffload for Fake {
    fn start(&mut self, w: &[BlockQ8_0], x: &[BlockQ8_0], n: usize, rows: usize) -> bool {
        self.log.lock().unwrap().push((n, rows));
        if self.mode == Mode::Decline {
            return false;
        }
        self.pending = Some((w.to_vec(), x.to_vec(), n));
        true
    }
    fn finish(&mut self, y: &mut [f32]) -> Result<(), OffloadError> {
        let (w, x, n) = self.pending.take().ok_or(OffloadError::NothingStarted)?;
        if self.mode == Mode::Fail {
            y.fill(f32::NAN);
            return Err(OffloadError::Device);
        }
        Kernels::scalar()
            .matmul(&w, &x, n, y)
            .map_err(|_| OffloadError::Device)
    }
}

fn logits(kernels: Kernels, device: Option<Mode>, prompt: &[u32]) -> (Vec<f32>, u64, u64, usize) {
    let file = llm_runtime::gguf::AlignedBuf::read(MODEL).unwrap();
    let g = Gguf::parse(file.as_bytes()).unwrap();
    let (cfg, w) = model::load(&g).unwrap();
    let mut m = Model::new(cfg, ModelOptions::for_config(&cfg), kernels).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    if let Some(mode) = device {
        m.set_offload(Some(Box::new(Fake {
            mode,
            pending: None,
            log: log.clone(),
        })));
    }
    let out = m.prefill(&w, prompt, 0).unwrap().to_vec();
    // One decode step: never offloaded.
    let next = m.forward(&w, 1, prompt.len()).unwrap().to_vec();
    let calls = log.lock().unwrap().len();
    let mut all = out;
    all.extend(next);
    (all, m.offloaded, m.offload_fallbacks, calls)
}

const PROMPT: [u32; 12] = [1, 450, 693, 310, 283, 338, 263, 155, 292, 322, 372, 338];

#[test]
fn the_device_gets_the_v_projections_of_prefill() {
    let (cpu, ..) = logits(Kernels::scalar(), None, &PROMPT);
    let (dev, used, fell, calls) = logits(Kernels::scalar(), Some(Mode::Compute), &PROMPT);
    let layers = {
        let raw = std::fs::read(MODEL).unwrap();
        let g = Gguf::parse(&raw).unwrap();
        model::load(&g).unwrap().0.n_layers
    };
    assert_eq!((used, fell, calls), (layers as u64, 0, layers));
    // The device computes as the scalar kernel does: with scalar CPU kernels, bit-identical.
    assert_eq!(
        cpu.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        dev.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn a_device_that_declines_or_fails_changes_nothing() {
    let k = Kernels::detect();
    let (cpu, ..) = logits(k.clone(), None, &PROMPT);
    for mode in [Mode::Decline, Mode::Fail] {
        let (dev, used, fell, calls) = logits(k.clone(), Some(mode), &PROMPT);
        assert_eq!(used, 0);
        assert_eq!(fell, if mode == Mode::Fail { calls as u64 } else { 0 });
        assert!(calls > 0);
        assert_eq!(
            cpu.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            dev.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
