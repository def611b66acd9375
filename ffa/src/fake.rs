//! A scripted [`Conduit`] for host tests: a queue of (expected request, canned reply).
//! A call that differs from the next expected request panics with both register sets
//! (decoded where possible), which fails the test with a clear message.
//!
//! Enabled by `cfg(test)` or the `fake` feature (needs `alloc`).

extern crate alloc;

use alloc::collections::VecDeque;

use crate::{Conduit, Interface, Regs};

/// One scripted step.
#[derive(Clone, Debug)]
pub struct Step {
    pub expect: Regs,
    pub reply: Regs,
}

/// Replays a script of calls; see the module doc.
#[derive(Clone, Debug, Default)]
pub struct ScriptedConduit {
    steps: VecDeque<Step>,
    calls: usize,
}

impl ScriptedConduit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Expect `req`, answer `reply`.
    pub fn expect(mut self, req: Interface, reply: Interface) -> Self {
        self.push(req, reply);
        self
    }

    /// Expect exact registers, answer exact registers (for malformed replies).
    pub fn expect_regs(mut self, req: Regs, reply: Regs) -> Self {
        self.steps.push_back(Step { expect: req, reply });
        self
    }

    pub fn push(&mut self, req: Interface, reply: Interface) {
        self.steps.push_back(Step {
            expect: req.to_regs(),
            reply: reply.to_regs(),
        });
    }

    /// Number of calls made so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Steps not yet consumed.
    pub fn remaining(&self) -> usize {
        self.steps.len()
    }

    /// Panics if any scripted step was not consumed.
    #[track_caller]
    pub fn assert_done(&self) {
        if let Some(s) = self.steps.front() {
            panic!(
                "ScriptedConduit: {} scripted call(s) never made; next expected {:?}",
                self.steps.len(),
                Interface::from_regs(&s.expect)
            );
        }
    }
}

impl Conduit for ScriptedConduit {
    #[track_caller]
    fn call(&mut self, regs: Regs) -> Regs {
        self.calls += 1;
        let Some(step) = self.steps.pop_front() else {
            panic!(
                "ScriptedConduit: unexpected call #{} {:?} ({regs:x?}); script is empty",
                self.calls,
                Interface::from_regs(&regs)
            );
        };
        if step.expect != regs {
            panic!(
                "ScriptedConduit: call #{} mismatch\n  expected {:?}\n           {:x?}\n  got      {:?}\n           {:x?}",
                self.calls,
                Interface::from_regs(&step.expect),
                step.expect,
                Interface::from_regs(&regs),
                regs
            );
        }
        step.reply
    }
}
