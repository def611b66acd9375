//! Model serving with the FlexServe SP: the `demo` scenario's model part (when the boot
//! configuration names a model) and the `serve` scenario (hostile inputs, each with its exact
//! error, and good generations checked token for token against the client's own run).
//!
//! The client runs the same model itself in the normal world first (same `llm-runtime` code,
//! same kernels, same CPU), so the SP's token ids must equal its own exactly.
//!
//! Client pages (offsets in the share window): the I/O buffer 100..116, a scratch page 120, a
//! corruptible copy of the model from 200; the model itself lies where `Env::model` says
//! (`ns_ram::MODEL_BASE` on QEMU).
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its reason inline; checks are not hot"
)]

use crate::{
    Env, fail,
    report::{CheckResult, Fail, Needs, Report},
    scenarios::{Ctx, discovery, setup},
};
use alloc::{string::String, vec, vec::Vec};
use core::fmt::Write;
use core::ops::ControlFlow;
use ffa::{
    Error, FfaError, Handle, ReclaimFlags, Uuid,
    memory::{
        DataAccess, Emad, EmadSize, InstructionAccess, MemAccessPerm, MemFlags, MemRange,
        MemRegionAttributes, MemTransaction, SendKind,
    },
};
use flexserve_proto::{
    Command, DIRECT_PAYLOAD_REGS, DIRECT2_PAYLOAD_REGS, DeviceKey, GenerateArgs, GenerateResult,
    IoFault, MemStats, ModelFault, ModelInfo, PromptFault, Request, Response, SERVICE_UUID,
    Sampling, Status, Width, caps, io, kernel_path,
};
use llm_runtime::{
    generate::{Generator, NoClock, TextOutput},
    gguf::Gguf,
    kernels::{Kernels, Path},
    model::{self, Model, ModelOptions},
    sampler::{Sampler, SamplerConfig},
    tokenizer::Tokenizer,
};
use testbed_layout::control;

const PAGE: u64 = 4096;
/// The SHARE'd I/O buffer: 64 KiB.
pub(crate) const IO_PAGE: u64 = 100;
pub(crate) const IO_PAGES: u32 = 16;
const SCRATCH_PAGE: u64 = 120;
const COPY_PAGE: u64 = 200;

/// The demo's prompts, greedy.
pub const DEMO_PROMPTS: [&str; 3] = ["A computer", "Love is", "The meaning of life is"];
pub const DEMO_TOKENS: u32 = 40;

fn f(args: core::fmt::Arguments<'_>) -> Fail {
    Fail::new(args)
}

/// A reply to a serving command, owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Model(ModelInfo),
    DeviceKey(DeviceKey),
    Attested(u32),
    Generated(GenerateResult),
    Done,
    Stats(MemStats),
    Error(Status, u64),
}

/// What a generation produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub ids: Vec<u32>,
    pub text: String,
}

/// The client's own run of the model: its configuration, kernels and outputs.
pub struct Reference {
    pub n_layers: u32,
    pub dim: u32,
    pub vocab: u32,
    pub context: u32,
    pub matvec: u8,
    pub matmul: u8,
    pub outputs: Vec<Output>,
    /// Counter ticks of all the runs, and the counter frequency.
    pub ticks: Option<(u64, u64)>,
}

fn path_code(p: Path) -> u8 {
    match p {
        Path::Scalar => kernel_path::SCALAR,
        Path::Neon => kernel_path::NEON,
        Path::Sdot => kernel_path::SDOT,
        Path::Smmla => kernel_path::SMMLA,
        Path::Avx2 => kernel_path::AVX2,
        Path::Avx512Vnni => kernel_path::AVX512VNNI,
    }
}

/// Generates as the SP does (`flexserve_sp::serve`): BOS + prompt, then the shared
/// `llm_runtime::generate` loop, text decoded with the same `TextOutput`.
fn generate_local(
    tok: &Tokenizer,
    w: &model::Weights<'_>,
    m: &mut Model,
    prompt: &str,
    max_tokens: u32,
    s: Sampling,
) -> Result<Output, Fail> {
    let vocab = m.config().vocab_size;
    let mut sampler = Sampler::new(
        SamplerConfig {
            temperature: s.temperature,
            top_k: s.top_k as usize,
            top_p: s.top_p,
            seed: s.seed,
        },
        vocab,
    )
    .map_err(|e| f(format_args!("sampler: {e:?}")))?;
    let ids = tok.encode(prompt, true, false);
    let mut out = Output::default();
    // The client reads at most a few dozen tokens back: no cap needed.
    let mut text = TextOutput::continuing(usize::MAX);
    Generator {
        model: m,
        weights: w,
        tokenizer: tok,
    }
    .generate(&mut sampler, &ids, max_tokens as usize, &NoClock, |id| {
        out.ids.push(id);
        text.push(tok, id);
        ControlFlow::Continue(())
    })
    .map_err(|e| f(format_args!("generate: {e}")))?;
    out.text = text.finish();
    Ok(out)
}

/// Runs the model in the normal world for each (prompt, max_tokens, sampling).
pub(crate) fn reference<E: Env>(
    c: &mut Ctx<'_, E>,
    runs: &[(&str, u32, Sampling)],
) -> Result<Reference, Fail> {
    let t0 = c.env.counter();
    let r = c.env.with_model_bytes(|bytes| -> Result<Reference, Fail> {
        let g = Gguf::parse(bytes).map_err(|e| f(format_args!("GGUF: {e}")))?;
        let tok = Tokenizer::from_gguf(&g).map_err(|e| f(format_args!("tokenizer: {e}")))?;
        let (cfg, w) = model::load(&g).map_err(|e| f(format_args!("model: {e}")))?;
        let kernels = Kernels::detect();
        let opts = ModelOptions::for_config(&cfg);
        let mut m =
            Model::new(cfg, opts, kernels.clone()).map_err(|e| f(format_args!("model: {e}")))?;
        let mut outputs = Vec::new();
        for &(p, n, s) in runs {
            outputs.push(generate_local(&tok, &w, &mut m, p, n, s)?);
        }
        Ok(Reference {
            n_layers: cfg.n_layers as u32,
            dim: cfg.dim as u32,
            vocab: cfg.vocab_size as u32,
            context: opts.seq_len as u32,
            matvec: path_code(kernels.matvec_path()),
            matmul: path_code(kernels.matmul_path()),
            outputs,
            ticks: None,
        })
    });
    let mut r = r.ok_or_else(|| f(format_args!("no model in the boot configuration")))??;
    if let (Some((a, hz)), Some((b, _))) = (t0, c.env.counter()) {
        r.ticks = Some((b.wrapping_sub(a), hz));
    }
    Ok(r)
}

impl<E: Env> Ctx<'_, E> {
    pub(crate) fn window_page(&self, n: u64) -> u64 {
        self.env.share_window().0 + n * PAGE
    }

    /// A send descriptor from this client to the SP for `ranges` (address, pages).
    fn serve_desc(&self, kind: SendKind, ranges: &[(u64, u32)]) -> MemTransaction {
        MemTransaction {
            sender_id: self.own_id,
            attributes: MemRegionAttributes::for_send(kind, 1),
            flags: MemFlags(0),
            handle: Handle(0),
            tag: 0,
            emad_size: EmadSize::V1_2,
            receivers: vec![Emad::new(MemAccessPerm {
                endpoint_id: self.sp.map_or(0, |s| s.id),
                data_access: DataAccess::ReadWrite,
                instruction_access: InstructionAccess::NotSpecified,
                non_retrieval_borrower: false,
            })],
            ranges: ranges
                .iter()
                .map(|&(address, page_count)| MemRange {
                    address,
                    page_count,
                })
                .collect(),
        }
    }

    pub(crate) fn give(&mut self, kind: SendKind, ranges: &[(u64, u32)]) -> Result<Handle, Fail> {
        let desc = self.serve_desc(kind, ranges);
        let (ep, bufs) = self.env.ep_bufs();
        ep.mem_send(kind, &desc, bufs)
            .map_err(|e| f(format_args!("{kind:?} of {ranges:x?}: {e:?}")))
    }

    pub(crate) fn take_back(&mut self, h: Handle) -> Result<(), Fail> {
        self.env
            .ep()
            .mem_reclaim(h, ReclaimFlags::default())
            .map_err(|e| f(format_args!("reclaim {:#x}: {e:?}", h.0)))
    }

    /// One serving command over DIRECT_REQ2 (or DIRECT_REQ_64 with `req2 == false`).
    pub(crate) fn serve_call(&mut self, req: Request<'_>, req2: bool) -> Result<Reply, Fail> {
        let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
        let n = if req2 {
            DIRECT2_PAYLOAD_REGS
        } else {
            DIRECT_PAYLOAD_REGS
        };
        if let Err(e) = req.encode(&mut regs[..n], Width::W64) {
            fail!("cannot encode {req:?}: {e:?}");
        }
        let Some(cmd) = Command::from_id(regs[0] as u16) else {
            fail!("no command id in {regs:x?}");
        };
        let reply: Vec<u64> = if req2 {
            match self.direct2(Uuid(SERVICE_UUID), &regs) {
                Ok(r) => r.to_vec(),
                Err(e) => fail!("{cmd:?}: DIRECT_REQ2 failed: {e:?}"),
            }
        } else {
            let mut short = [0u64; DIRECT_PAYLOAD_REGS];
            short.copy_from_slice(&regs[..DIRECT_PAYLOAD_REGS]);
            match self.direct(&short, Width::W64) {
                Ok(r) => r.to_vec(),
                Err(e) => fail!("{cmd:?}: DIRECT_REQ failed: {e:?}"),
            }
        };
        Ok(match Response::decode(&reply, Width::W64, cmd) {
            Ok(Response::Model(i)) => Reply::Model(i),
            Ok(Response::Generated(g)) => Reply::Generated(g),
            Ok(Response::MemStats(s)) => Reply::Stats(s),
            Ok(Response::Done) => Reply::Done,
            Ok(Response::DeviceKey(k)) => Reply::DeviceKey(k),
            Ok(Response::Attested(n)) => Reply::Attested(n),
            Ok(Response::Error { status, detail }) => Reply::Error(status, detail),
            other => fail!("{cmd:?}: reply {other:?}"),
        })
    }

    fn model_load(&mut self, h: Handle) -> Result<Reply, Fail> {
        self.serve_call(Request::ModelLoad { handle: h.0 }, true)
    }

    fn generate(
        &mut self,
        io_h: Handle,
        prompt: &[u8],
        max_tokens: u32,
        sampling: Sampling,
    ) -> Result<Reply, Fail> {
        let io = self.window_page(IO_PAGE);
        self.env.mem_write(io, prompt);
        self.serve_call(
            Request::Generate(GenerateArgs {
                io_handle: io_h.0,
                prompt_len: prompt.len() as u32,
                max_tokens,
                sampling,
            }),
            true,
        )
    }

    /// A generation that must succeed; returns the result and the output read back.
    pub(crate) fn generate_ok(
        &mut self,
        io_h: Handle,
        prompt: &str,
        max_tokens: u32,
        sampling: Sampling,
    ) -> Result<(GenerateResult, Output), Fail> {
        let g = match self.generate(io_h, prompt.as_bytes(), max_tokens, sampling)? {
            Reply::Generated(g) => g,
            other => fail!("generate {prompt:?}: {other:x?}"),
        };
        let io = self.window_page(IO_PAGE);
        let io_len = u64::from(IO_PAGES) * PAGE;
        let text_at = io::text_offset(g.generated) as u64;
        if g.generated > max_tokens || text_at + u64::from(g.text_len) > io_len {
            fail!("reply {g:?} does not fit the request or the buffer");
        }
        let mut raw = vec![0u8; text_at as usize];
        self.env.mem_read(io + io::IDS_OFFSET as u64, &mut raw);
        let ids = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut text = vec![0u8; g.text_len as usize];
        self.env.mem_read(io + text_at, &mut text);
        let text = match String::from_utf8(text) {
            Ok(t) => t,
            Err(e) => fail!("output text is not UTF-8: {e}"),
        };
        Ok((g, Output { ids, text }))
    }

    /// The SP answers `status` with `detail`, then still serves a ping.
    fn refused(&mut self, r: Result<Reply, Fail>, status: Status, detail: u64) -> CheckResult {
        match r? {
            Reply::Error(s, d) if s == status && d == detail => {}
            other => fail!("{other:x?}, expected {status:?} ({detail:#x})"),
        }
        self.still_serving()
    }

    /// A ping gets its echo (the counter restarts: served requests in between moved it).
    pub(crate) fn still_serving(&mut self) -> CheckResult {
        self.counter = None;
        self.ping(&[0x5e, 0x27e, 0x1], Width::W64)
            .map_err(|e| f(format_args!("the SP stopped serving: {}", e.as_str())))
    }

    pub(crate) fn mem_stats(&mut self) -> Result<MemStats, Fail> {
        match self.serve_call(Request::MemStats, true)? {
            Reply::Stats(s) => Ok(s),
            other => fail!("stats: {other:x?}"),
        }
    }

    /// The SP's `info` capabilities ([`caps`] bits), 0 if it does not answer.
    pub(crate) fn capabilities(&mut self) -> u64 {
        match self.direct(&[Command::Info as u64, 0, 0, 0, 0], Width::W64) {
            Ok(reply) => match Response::decode(&reply, Width::W64, Command::Info) {
                Ok(Response::Info(i)) => i.capabilities,
                _ => 0,
            },
            Err(_) => 0,
        }
    }

    /// Generates for each of the demo prompts (greedy, printing each with its round-trip time)
    /// and checks each output with `check` under the name `names[i]`.
    pub(crate) fn demo_generations<W: Write>(
        &mut self,
        r: &mut Report<W>,
        io: Handle,
        names: [&str; 3],
        check: impl Fn(usize, &Output) -> CheckResult,
    ) {
        for (i, prompt) in DEMO_PROMPTS.iter().enumerate() {
            let t0 = self.env.counter();
            let res = self.generate_ok(io, prompt, DEMO_TOKENS, Sampling::GREEDY);
            let t1 = self.env.counter();
            if let Ok((g, out)) = &res {
                let rt = t0.zip(t1).map(|((a, _), (b, _))| b.wrapping_sub(a));
                print_generation(r, prompt, "", g, out, rt);
            }
            r.check(names[i], res.and_then(|(_, out)| check(i, &out)));
        }
    }

    /// The model's pages: (address, pages).
    pub(crate) fn model_pages(&self) -> Result<(u64, u32), Fail> {
        match self.env.model() {
            Some((base, size)) => Ok((base, size.div_ceil(PAGE) as u32)),
            None => fail!("no model in the boot configuration"),
        }
    }

    /// Copies the model file to the copy area, then applies `patch` to the copy.
    fn model_copy(&mut self, patch: impl FnOnce(&mut [u8])) -> Result<(u64, u32), Fail> {
        let Some(mut bytes) = self.env.with_model_bytes(|b| b.to_vec()) else {
            fail!("no model in the boot configuration");
        };
        patch(&mut bytes);
        let at = self.window_page(COPY_PAGE);
        self.env.mem_write(at, &bytes);
        Ok((at, (bytes.len() as u64).div_ceil(PAGE) as u32))
    }

    /// Lends `pages` and asks the SP to load them; the SP must refuse with `fault` (or
    /// `status`/`detail`) and give the memory back (the reclaim succeeds).
    pub(crate) fn load_refused(
        &mut self,
        kind: SendKind,
        pages: (u64, u32),
        status: Status,
        detail: Option<u64>,
    ) -> CheckResult {
        let h = self.give(kind, &[pages])?;
        let r = self.model_load(h);
        let back = self.take_back(h);
        match (r?, detail) {
            (Reply::Error(s, d), Some(want)) if s == status && d == want => {}
            (Reply::Error(s, _), None) if s == status => {}
            (other, _) => fail!("{other:x?}, expected {status:?} ({detail:x?})"),
        }
        back.map_err(|e| {
            f(format_args!(
                "the SP kept the refused memory: {}",
                e.as_str()
            ))
        })?;
        let n = self.counter.map_or(1, |n| n + 1);
        self.ping(&[n, 0x10ad, 0], Width::W64)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Overwrites the value of the u32/u64 metadata key `key` (right after the key's string and
/// its 4-byte type) with `value` in the low bytes.
fn patch_key(bytes: &mut [u8], key: &[u8], value: u32) {
    if let Some(at) = find(bytes, key) {
        let v = at + key.len() + 4;
        if let Some(slot) = bytes.get_mut(v..v + 4) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    }
}

fn tok_s(n: u64, ticks: u64, hz: u64) -> f64 {
    if ticks == 0 || hz == 0 {
        0.0
    } else {
        n as f64 * hz as f64 / ticks as f64
    }
}

pub(crate) fn ms(ticks: u64, hz: u64) -> f64 {
    if hz == 0 {
        0.0
    } else {
        ticks as f64 * 1000.0 / hz as f64
    }
}

fn check_info(i: &ModelInfo, r: &Reference) -> CheckResult {
    let sp = (
        i.n_layers,
        i.dim,
        i.vocab,
        i.context,
        i.matvec_path,
        i.matmul_path,
    );
    let me = (r.n_layers, r.dim, r.vocab, r.context, r.matvec, r.matmul);
    if sp != me {
        fail!("SP model {sp:?} (layers, dim, vocab, ctx, kernels), client {me:?}");
    }
    Ok(())
}

pub(crate) fn same_output(sp: &Output, me: &Output) -> CheckResult {
    if sp.ids != me.ids {
        let at = sp.ids.iter().zip(&me.ids).position(|(a, b)| a != b);
        fail!(
            "token ids differ (first at {at:?}; SP {} ids, client {}): SP {:?} client {:?}",
            sp.ids.len(),
            me.ids.len(),
            &sp.ids[..sp.ids.len().min(8)],
            &me.ids[..me.ids.len().min(8)]
        );
    }
    if sp.text != me.text {
        fail!("same ids but texts differ: {:?} vs {:?}", sp.text, me.text);
    }
    Ok(())
}

fn lent_blocked<E: Env>(c: &mut Ctx<'_, E>, pa: u64) -> CheckResult {
    let p = c.env.probe_read(pa);
    match p.blocked {
        Some(true) if p.value == control::POISON => Ok(()),
        Some(true) => fail!("blocked, but the load returned {:#x}", p.value),
        Some(false) => fail!("the client read {:#x} from lent model memory", p.value),
        None => fail!("this machine cannot tell whether a read was blocked"),
    }
}

fn reads_again<E: Env>(c: &mut Ctx<'_, E>, pa: u64) -> CheckResult {
    let p = c.env.probe_read(pa);
    let mut want = [0u8; 8];
    c.env.mem_read(pa, &mut want);
    match p.blocked {
        Some(true) => fail!("still blocked after reclaim"),
        _ if p.value != u64::from_le_bytes(want) => fail!("read {:#x}", p.value),
        // "GGUF", version 3: the file is back as it was.
        _ if p.value != 0x0000_0003_4655_4747 => fail!("model header now {:#x}", p.value),
        _ => Ok(()),
    }
}

pub(crate) fn print_generation<W: Write>(
    r: &mut Report<W>,
    prompt: &str,
    label: &str,
    g: &GenerateResult,
    out: &Output,
    round_trip: Option<u64>,
) {
    let hz = g.counter_hz;
    // Readable, and no output line can start like a check line: continuation lines are
    // indented, tabs and other control characters become spaces.
    let text: String = out
        .text
        .chars()
        .flat_map(|ch| match ch {
            '\n' => ['\n', ' ', ' ', ' ', ' ', ' '].into_iter().take(6),
            ch if ch.is_control() => [' ', ' ', ' ', ' ', ' ', ' '].into_iter().take(1),
            ch => [ch, ' ', ' ', ' ', ' ', ' '].into_iter().take(1),
        })
        .collect();
    r.note(format_args!("{prompt}{label} -> {prompt}{text}"));
    r.note(format_args!(
        "    {} prompt tokens, {} generated ({:?}); prefill {:.1} tok/s, TTFT {:.1} ms, decode {:.1} tok/s (QEMU guest time){}",
        g.prompt_tokens,
        g.generated,
        g.stop,
        tok_s(u64::from(g.prompt_tokens), g.prefill_ticks, hz),
        ms(g.prefill_ticks, hz),
        tok_s(u64::from(g.generated.saturating_sub(1)), g.decode_ticks, hz),
        match round_trip {
            Some(t) => alloc::format!(", whole request {:.1} ms", ms(t, hz)),
            None => String::new(),
        }
    ));
}

/// The common start: FF-A set-up, discovery, the serving capability, a model in the boot
/// configuration.
pub(crate) fn start<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) -> bool {
    if !setup(c, r) {
        return false;
    }
    discovery(c, r);
    if c.sp.is_none() {
        return false;
    }
    r.check("serve.capability", {
        match c.direct(&[Command::Info as u64, 0, 0, 0, 0], Width::W64) {
            Ok(reply) => match Response::decode(&reply, Width::W64, Command::Info) {
                Ok(Response::Info(i)) if i.capabilities & caps::SERVING != 0 => Ok(()),
                other => Err(f(format_args!("SP does not serve models: {other:?}"))),
            },
            Err(e) => Err(f(format_args!("{e:?}"))),
        }
    }) && r.check("serve.model_in_boot_config", c.model_pages().map(|_| ()))
}

/// The demo's model part: lend the model, load it, generate for each prompt, unload, reclaim.
pub(crate) fn demo_model<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    if c.env.model().is_none()
        && c.env
            .sealed_package(testbed_layout::SealedKind::Main)
            .is_some()
    {
        return crate::sealed::demo_sealed(c, r);
    }
    let Ok((base, pages)) = c.model_pages() else {
        return;
    };
    r.check("demo.serve.capability", {
        match c.direct(&[Command::Info as u64, 0, 0, 0, 0], Width::W64) {
            Ok(reply) => match Response::decode(&reply, Width::W64, Command::Info) {
                Ok(Response::Info(i)) if i.capabilities & caps::SERVING != 0 => Ok(()),
                other => Err(f(format_args!("SP does not serve models: {other:?}"))),
            },
            Err(e) => Err(f(format_args!("{e:?}"))),
        }
    });
    r.note(format_args!(
        "model: {} bytes at {base:#x}; the client runs it itself first (normal world, greedy)",
        pages as u64 * PAGE
    ));
    let runs: Vec<(&str, u32, Sampling)> = DEMO_PROMPTS
        .iter()
        .map(|p| (*p, DEMO_TOKENS, Sampling::GREEDY))
        .collect();
    let reference = reference(c, &runs);
    if let Ok(re) = &reference {
        r.note(format_args!(
            "client: {} layers, dim {}, vocab {}, context {}, kernels {}/{}{}",
            re.n_layers,
            re.dim,
            re.vocab,
            re.context,
            kernel_path::name(re.matvec),
            kernel_path::name(re.matmul),
            match re.ticks {
                Some((t, hz)) => alloc::format!(", {} runs in {:.0} ms", runs.len(), ms(t, hz)),
                None => String::new(),
            }
        ));
    }
    if !r.check(
        "demo.client_reference_run",
        reference
            .as_ref()
            .map(|_| ())
            .map_err(|e| f(format_args!("{}", e.as_str()))),
    ) {
        return;
    }
    let Ok(reference) = reference else { return };
    let io = c.give(SendKind::Share, &[(c.window_page(IO_PAGE), IO_PAGES)]);
    let model = c.give(SendKind::Lend, &[(base, pages)]);
    let (io, model) = match (io, model) {
        (Ok(i), Ok(m)) => (i, m),
        (i, m) => {
            r.check(
                "demo.share_and_lend",
                Err(f(format_args!("io {i:?}, model {m:?}"))),
            );
            return;
        }
    };
    r.note(format_args!(
        "shared a {} KiB I/O buffer, lent the model's {pages} pages (handle {:#x})",
        IO_PAGES as u64 * PAGE / 1024,
        model.0
    ));
    r.testbed_only(
        c.env.spmc(),
        "demo.lent_model_unreadable_by_client",
        Needs::Stage2Enforcement,
        || lent_blocked(c, base + 8),
    );
    let t0 = c.env.counter();
    let info = match c.model_load(model) {
        Ok(Reply::Model(i)) => Ok(i),
        Ok(other) => Err(f(format_args!("{other:x?}"))),
        Err(e) => Err(e),
    };
    if let (Ok(i), Some((a, hz)), Some((b, _))) = (&info, t0, c.env.counter()) {
        r.note(format_args!(
            "SP loaded it in {:.1} ms: {} layers, dim {}, vocab {}, context {}, kernels decode {} / prefill {}, {} KiB heap",
            ms(b.wrapping_sub(a), hz),
            i.n_layers,
            i.dim,
            i.vocab,
            i.context,
            kernel_path::name(i.matvec_path),
            kernel_path::name(i.matmul_path),
            i.heap_bytes / 1024
        ));
    }
    let loaded = r.check(
        "demo.model_load",
        info.as_ref()
            .map_err(|e| f(format_args!("{}", e.as_str())))
            .and_then(|i| check_info(i, &reference)),
    );
    if loaded {
        c.demo_generations(
            r,
            io,
            [
                "demo.generate1_matches_client",
                "demo.generate2_matches_client",
                "demo.generate3_matches_client",
            ],
            |i, out| same_output(out, &reference.outputs[i]),
        );
        r.check(
            "demo.model_unload",
            match c.serve_call(Request::ModelUnload, true) {
                Ok(Reply::Done) => Ok(()),
                Ok(other) => Err(f(format_args!("{other:x?}"))),
                Err(e) => Err(e),
            },
        );
    }
    r.check("demo.reclaim_model", c.take_back(model));
    r.check("demo.client_reads_model_again", reads_again(c, base));
    r.check("demo.reclaim_io", c.take_back(io));
}

/// The `serve` scenario.
/// FFA_VERSION(1.2) first: DIRECT_REQ2 needs a caller that negotiated v1.2 (TF-A's EL3 SPMC
/// answers NOT_SUPPORTED otherwise).
pub(crate) fn negotiate_v1_2<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    r.check("version.v1_2", {
        match c.env.ep().version(crate::scenarios::FFA_VERSION) {
            Ok(v) if crate::scenarios::FFA_VERSION.is_compatible_with(v) => Ok(()),
            other => Err(f(format_args!("{other:?}"))),
        }
    });
}

pub(crate) fn serve<E: Env, W: Write>(c: &mut Ctx<'_, E>, r: &mut Report<W>) {
    negotiate_v1_2(c, r);
    if !start(c, r) {
        return;
    }
    let Ok((base, pages)) = c.model_pages() else {
        return;
    };
    const GREEDY_PROMPT: &str = "A computer";
    const N: u32 = 32;
    let sampled = Sampling {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        seed: 7,
    };
    let reference = reference(
        c,
        &[
            (GREEDY_PROMPT, N, Sampling::GREEDY),
            ("Love is", N, sampled),
        ],
    );
    if !r.check(
        "serve.client_reference_run",
        reference
            .as_ref()
            .map(|_| ())
            .map_err(|e| f(format_args!("{}", e.as_str()))),
    ) {
        return;
    }
    let Ok(reference) = reference else { return };
    let io = match c.give(SendKind::Share, &[(c.window_page(IO_PAGE), IO_PAGES)]) {
        Ok(h) => h,
        Err(e) => {
            r.check("serve.io_share", Err(e));
            return;
        }
    };
    let ctx = u64::from(reference.context);

    // Before any model.
    r.check(
        "serve.generate_before_load",
        c.generate(io, b"A computer", 8, Sampling::GREEDY)
            .and_then(|x| c.refused(Ok(x), Status::NoModel, 0)),
    );
    r.check(
        "serve.unload_with_nothing_loaded",
        c.serve_call(Request::ModelUnload, true)
            .and_then(|x| c.refused(Ok(x), Status::NoModel, 0)),
    );
    r.check(
        "serve.load_over_direct_req_unsupported",
        c.serve_call(Request::ModelLoad { handle: 1 }, false)
            .and_then(|x| c.refused(Ok(x), Status::Unsupported, Command::ModelLoad as u64)),
    );
    r.check("serve.generate_over_direct_req_unsupported", {
        let mut regs = [0u64; DIRECT_PAYLOAD_REGS];
        regs[..5].copy_from_slice(&[
            Command::Generate as u64,
            io.0 & 0xffff_ffff,
            io.0 >> 32,
            4,
            8,
        ]);
        match c.direct(&regs, Width::W64) {
            Ok(x) => match Response::decode(&x, Width::W64, Command::Generate) {
                Ok(Response::Error { status, detail }) => c.refused(
                    Ok(Reply::Error(status, detail)),
                    Status::Unsupported,
                    Command::Generate as u64,
                ),
                other => Err(f(format_args!("{other:?}"))),
            },
            Err(e) => Err(f(format_args!("{e:?}"))),
        }
    });

    // Models the SP must refuse, each given back.
    r.check(
        "serve.load_shared_model_refused",
        c.load_refused(
            SendKind::Share,
            (base, pages),
            Status::BadModel,
            Some(ModelFault::NotLent as u64),
        ),
    );
    r.check(
        "serve.load_bad_magic_refused",
        c.model_copy(|b| b[0] = b'X').and_then(|p| {
            c.load_refused(
                SendKind::Lend,
                p,
                Status::BadModel,
                Some(ModelFault::Gguf as u64),
            )
        }),
    );
    r.check(
        "serve.load_truncated_refused",
        c.model_copy(|_| ()).and_then(|(at, _)| {
            c.load_refused(
                SendKind::Lend,
                (at, 2),
                Status::BadModel,
                Some(ModelFault::Gguf as u64),
            )
        }),
    );
    r.check(
        "serve.load_zero_context_refused",
        c.model_copy(|b| patch_key(b, b"llama.context_length", 0))
            .and_then(|p| {
                c.load_refused(
                    SendKind::Lend,
                    p,
                    Status::BadModel,
                    Some(ModelFault::Model as u64),
                )
            }),
    );
    r.check(
        "serve.load_too_many_tensors_refused",
        c.model_copy(|b| b[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes()))
            .and_then(|p| {
                c.load_refused(
                    SendKind::Lend,
                    p,
                    Status::BadModel,
                    Some(ModelFault::TooManyEntries as u64),
                )
            }),
    );
    r.check(
        "serve.load_context_beyond_heap_refused",
        c.model_copy(|b| patch_key(b, b"llama.context_length", 1 << 20))
            .and_then(|p| c.load_refused(SendKind::Lend, p, Status::NoMemory, None)),
    );

    // The real model.
    let model = match c.give(SendKind::Lend, &[(base, pages)]) {
        Ok(h) => h,
        Err(e) => {
            r.check("serve.lend_model", Err(e));
            return;
        }
    };
    r.testbed_only(
        c.env.spmc(),
        "serve.lent_model_unreadable_by_client",
        Needs::Stage2Enforcement,
        || lent_blocked(c, base + 8),
    );
    let info = match c.model_load(model) {
        Ok(Reply::Model(i)) => Ok(i),
        Ok(other) => Err(f(format_args!("{other:x?}"))),
        Err(e) => Err(e),
    };
    let loaded = r.check(
        "serve.load_matches_client_config",
        info.as_ref()
            .map_err(|e| f(format_args!("{}", e.as_str())))
            .and_then(|i| check_info(i, &reference)),
    );
    if let (true, Ok(info)) = (loaded, info) {
        r.check(
            "serve.double_load_refused",
            c.model_load(model)
                .and_then(|x| c.refused(Ok(x), Status::ModelLoaded, 0)),
        );
        let region = info.region;
        r.check(
            "serve.release_of_model_region_refused",
            c.serve_call(Request::MemRelease { region }, false)
                .and_then(|x| c.refused(Ok(x), Status::InUse, u64::from(region))),
        );
        r.check(
            "serve.fill_of_model_region_refused",
            c.serve_call(
                Request::MemFill {
                    region,
                    offset: 0,
                    len: 16,
                    pattern: 1,
                },
                false,
            )
            .and_then(|x| c.refused(Ok(x), Status::InUse, u64::from(region))),
        );
        r.check("serve.reclaim_while_loaded_denied", {
            match c.env.ep().mem_reclaim(model, ReclaimFlags::default()) {
                Err(Error::Ffa(FfaError::Denied)) => Ok(()),
                other => Err(f(format_args!("{other:?}, expected DENIED"))),
            }
        });
        r.check(
            "serve.prompt_not_utf8",
            c.generate(io, &[b'A', 0xff, 0xfe, b'z'], 8, Sampling::GREEDY)
                .and_then(|x| c.refused(Ok(x), Status::BadPrompt, PromptFault::NotUtf8 as u64)),
        );
        r.check(
            "serve.prompt_empty",
            c.generate(io, b"", 8, Sampling::GREEDY)
                .and_then(|x| c.refused(Ok(x), Status::BadPrompt, PromptFault::Empty as u64)),
        );
        r.check("serve.prompt_too_long", {
            let args = GenerateArgs {
                io_handle: io.0,
                prompt_len: io::MAX_PROMPT_BYTES + 1,
                max_tokens: 8,
                sampling: Sampling::GREEDY,
            };
            c.serve_call(Request::Generate(args), true)
                .and_then(|x| c.refused(Ok(x), Status::BadPrompt, PromptFault::TooLong as u64))
        });
        r.check(
            "serve.max_tokens_zero",
            c.generate(io, b"A computer", 0, Sampling::GREEDY)
                .and_then(|x| c.refused(Ok(x), Status::Malformed, 4)),
        );
        r.check(
            "serve.max_tokens_beyond_context",
            c.generate(io, b"A computer", u32::MAX, Sampling::GREEDY)
                .and_then(|x| c.refused(Ok(x), Status::ContextFull, ctx)),
        );
        r.check(
            "serve.prompt_plus_tokens_beyond_context",
            c.generate(io, b"A computer", reference.context - 2, Sampling::GREEDY)
                .and_then(|x| c.refused(Ok(x), Status::ContextFull, ctx)),
        );
        r.check("serve.bad_top_p", {
            let mut regs = [0u64; DIRECT2_PAYLOAD_REGS];
            let args = GenerateArgs {
                io_handle: io.0,
                prompt_len: 4,
                max_tokens: 8,
                sampling: Sampling::GREEDY,
            };
            let _ = Request::Generate(args).encode(&mut regs, Width::W64);
            regs[7] = u64::from(1.5f32.to_bits());
            let reply = c.direct2(Uuid(SERVICE_UUID), &regs);
            match reply {
                Ok(x) => match Response::decode(&x, Width::W64, Command::Generate) {
                    Ok(Response::Error { status, detail }) => {
                        c.refused(Ok(Reply::Error(status, detail)), Status::Malformed, 7)
                    }
                    other => Err(f(format_args!("{other:?}"))),
                },
                Err(e) => Err(f(format_args!("{e:?}"))),
            }
        });
        r.check(
            "serve.unknown_io_handle",
            c.generate(Handle(0xdead_0000_0001), b"A computer", 8, Sampling::GREEDY)
                .and_then(|x| {
                    c.refused(
                        Ok(x),
                        Status::FfaError,
                        u64::from(FfaError::InvalidParameters as i32 as u32),
                    )
                }),
        );
        r.check("serve.lent_io_buffer_refused", {
            (|| {
                let scratch = c.window_page(SCRATCH_PAGE);
                c.env.mem_write(scratch, b"Love is");
                let h = c.give(SendKind::Lend, &[(scratch, 1)])?;
                let args = GenerateArgs {
                    io_handle: h.0,
                    prompt_len: 7,
                    max_tokens: 8,
                    sampling: Sampling::GREEDY,
                };
                let res = c.serve_call(Request::Generate(args), true);
                let back = c.take_back(h);
                c.refused(res, Status::BadIoBuffer, IoFault::NotShared as u64)?;
                back
            })()
        });
        let greedy = c.generate_ok(io, GREEDY_PROMPT, N, Sampling::GREEDY);
        if let Ok((g, out)) = &greedy {
            print_generation(r, GREEDY_PROMPT, "", g, out, None);
        }
        r.check(
            "serve.greedy_matches_client",
            greedy.and_then(|(_, out)| same_output(&out, &reference.outputs[0])),
        );
        let sampled_run = c.generate_ok(io, "Love is", N, sampled);
        if let Ok((g, out)) = &sampled_run {
            print_generation(
                r,
                "Love is",
                " (temp 0.8, top-k 40, top-p 0.95, seed 7)",
                g,
                out,
                None,
            );
        }
        r.check(
            "serve.sampled_matches_client",
            sampled_run.and_then(|(_, out)| same_output(&out, &reference.outputs[1])),
        );
        let greedy_ref = &reference.outputs[0];
        crate::cores::beside_running_sp(c, r, |c| {
            c.generate_ok(io, GREEDY_PROMPT, N, Sampling::GREEDY)
                .and_then(|(_, out)| same_output(&out, greedy_ref))
        });
        r.check("serve.only_the_model_held", {
            c.mem_stats().and_then(|s| {
                if (s.live_regions, s.mapped_pages) != (1, pages) {
                    fail!("{s:?}, expected 1 region of {pages} pages");
                }
                Ok(())
            })
        });
        r.check(
            "serve.unload",
            match c.serve_call(Request::ModelUnload, true) {
                Ok(Reply::Done) => Ok(()),
                Ok(other) => Err(f(format_args!("{other:x?}"))),
                Err(e) => Err(e),
            },
        );
        r.check(
            "serve.unload_again",
            c.serve_call(Request::ModelUnload, true)
                .and_then(|x| c.refused(Ok(x), Status::NoModel, 0)),
        );
    }
    r.check("serve.reclaim_model_after_unload", c.take_back(model));
    r.check("serve.client_reads_model_again", reads_again(c, base));
    r.check("serve.reclaim_io", c.take_back(io));
    r.check("serve.nothing_held_at_the_end", {
        c.mem_stats().and_then(|s| {
            if (s.live_regions, s.mapped_pages) != (0, 0) {
                fail!("{s:?}");
            }
            Ok(())
        })
    });
}
