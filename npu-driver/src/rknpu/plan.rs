//! Splitting one GEMM across the RKNPU cores and into CBUF-sized tasks.
//!
//! `N` is cut into 32-kernel groups (contiguous in the packed `W` and `Y`, see
//! [`super::layout`]); the groups are dealt to the cores in balanced contiguous ranges, and each
//! core's range is cut into tasks whose weights fit the CBUF banks left after the features
//! (all `M` rows of `X`, loaded by every task). Each core runs its tasks one after another,
//! one kick per task, as rocket does; the cores run in parallel.

use super::layout::{self, OUTPUT_ATOM, WEIGHT_GROUP};
use super::regcmd::MatmulTask;
use super::regs::{CBUF_BANK_BYTES, CBUF_BANKS, CORES};
use crate::{GemmJob, JobError};

/// Tasks one core may run for one job.
pub const MAX_TASKS_PER_CORE: usize = 32;

/// One core's share of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorePlan {
    tasks: [MatmulTask; MAX_TASKS_PER_CORE],
    count: usize,
}

impl CorePlan {
    const EMPTY: CorePlan = CorePlan {
        tasks: [MatmulTask {
            m: 0,
            k: 0,
            n: 0,
            input: 0,
            weights: 0,
            output: 0,
        }; MAX_TASKS_PER_CORE],
        count: 0,
    };

    pub fn tasks(&self) -> &[MatmulTask] {
        &self.tasks[..self.count]
    }
}

/// A job's tasks, per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub cores: [CorePlan; CORES],
}

impl Plan {
    pub const EMPTY: Plan = Plan {
        cores: [CorePlan::EMPTY; CORES],
    };

    pub fn task_count(&self) -> usize {
        self.cores.iter().map(|c| c.count).sum()
    }
}

/// Plans `job` (already shaped as [`layout::check`] demands) over the first `cores` cores.
pub fn plan(job: &GemmJob, cores: usize) -> Result<Plan, JobError> {
    layout::check(job)?;
    let cores = cores.clamp(1, CORES);
    let (m, k) = (job.m, job.k);
    // Features: the whole X in every task. The weight banks left decide the task size.
    let probe = MatmulTask {
        m,
        k,
        n: WEIGHT_GROUP as u32,
        input: 0,
        weights: 0,
        output: 0,
    };
    let data_banks = probe.banks()?.data;
    let weight_bytes = u64::from(CBUF_BANKS - data_banks) * u64::from(CBUF_BANK_BYTES);
    let groups_per_task = (weight_bytes / (WEIGHT_GROUP as u64 * u64::from(k))) as usize;
    if groups_per_task == 0 {
        return Err(JobError::TooLarge);
    }
    let groups = job.n as usize / WEIGHT_GROUP;
    let mut plan = Plan::EMPTY;
    for (c, cp) in plan.cores.iter_mut().enumerate().take(cores) {
        let (g0, g1) = (c * groups / cores, (c + 1) * groups / cores);
        let mut g = g0;
        while g < g1 {
            let take = groups_per_task.min(g1 - g);
            if cp.count == MAX_TASKS_PER_CORE {
                return Err(JobError::TooLarge);
            }
            let n0 = (g * WEIGHT_GROUP) as u64;
            // In range: layout::check proved W, X, Y fit below 2^32.
            let weights = job.w + n0 * u64::from(k);
            let output = job.y + (n0 / OUTPUT_ATOM as u64) * u64::from(m) * 16;
            let task = MatmulTask {
                m,
                k,
                n: (take * WEIGHT_GROUP) as u32,
                input: job.x as u32,
                weights: weights as u32,
                output: output as u32,
            };
            task.banks()?;
            cp.tasks[cp.count] = task;
            cp.count += 1;
            g += take;
        }
    }
    Ok(plan)
}
