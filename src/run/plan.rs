//! Run planning: which jobs a run performs (prompt × case × backend × sample), how they group
//! into stored runs, and how the samples of one case add up to its verdict. PURE: no IO, no
//! async; the executor (`super::exec`) and the commands consume what this returns.
//!
//! A stored run (`store::Run`) belongs to one prompt version and one backend, so a matrix over
//! several prompts and backends becomes several stored runs: one [`Group`] each. Jobs are listed
//! group by group, case by case, sample by sample, so any consumer that walks them in order
//! (reports, the baseline file) gets a stable order whatever order they finished in.

use std::collections::BTreeMap;

/// What the planner needs to know about one prompt: its name, how many cases run (the caller
/// keeps the list: test cases, or the prompt's `sample` variables as one pseudo-case), and on
/// which backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    pub prompt: String,
    pub cases: usize,
    pub backends: Vec<String>,
}

/// One stored run: a prompt on a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Index into the units given to [`plan`].
    pub unit: usize,
    /// Index into [`Plan::backends`].
    pub backend: usize,
}

/// One request to perform: a case of a prompt on a backend, one sample of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub group: usize,
    pub unit: usize,
    pub backend: usize,
    /// Position in the caller's case list of the unit.
    pub case: usize,
    pub sample: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Distinct backend names, in order of first use.
    pub backends: Vec<String>,
    pub groups: Vec<Group>,
    pub jobs: Vec<Job>,
}

impl Plan {
    /// The jobs each backend will run, as indices into [`Plan::jobs`], in plan order. Each
    /// backend works through its own queue so a slow backend never holds up a fast one.
    pub fn queues(&self) -> Vec<Vec<usize>> {
        let mut queues = vec![Vec::new(); self.backends.len()];
        for (i, job) in self.jobs.iter().enumerate() {
            queues[job.backend].push(i);
        }
        queues
    }
}

/// Upper bound on the jobs of one run: a typo such as `--samples 1000000` should be an error,
/// not an hour of requests and a store full of results.
pub const MAX_JOBS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the number of samples must be at least 1")]
    NoSamples,
    #[error("prompt `{0}` has no backend to run on")]
    NoBackend(String),
    #[error("nothing to run: no prompt has a case")]
    Empty,
    #[error("{jobs} requests is more than one run may make ({MAX_JOBS})")]
    TooLarge { jobs: usize },
}

/// Plans every case of every unit on each of its backends, `samples` times.
pub fn plan(units: &[UnitSpec], samples: u32) -> Result<Plan, PlanError> {
    if samples == 0 {
        return Err(PlanError::NoSamples);
    }
    let total: usize = units
        .iter()
        .map(|u| {
            u.cases
                .saturating_mul(u.backends.len())
                .saturating_mul(samples as usize)
        })
        .fold(0, usize::saturating_add);
    if total > MAX_JOBS {
        return Err(PlanError::TooLarge { jobs: total });
    }
    let mut backends: Vec<String> = Vec::new();
    let mut backend_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut groups = Vec::new();
    let mut jobs = Vec::with_capacity(total);
    for (unit_index, unit) in units.iter().enumerate() {
        if unit.backends.is_empty() {
            return Err(PlanError::NoBackend(unit.prompt.clone()));
        }
        for name in &unit.backends {
            let backend = *backend_index.entry(name.as_str()).or_insert_with(|| {
                backends.push(name.clone());
                backends.len() - 1
            });
            // The same backend named twice (`--backend a,a`) runs once.
            if groups
                .iter()
                .any(|g: &Group| g.unit == unit_index && g.backend == backend)
            {
                continue;
            }
            let group = groups.len();
            groups.push(Group {
                unit: unit_index,
                backend,
            });
            for case in 0..unit.cases {
                for sample in 0..samples {
                    jobs.push(Job {
                        group,
                        unit: unit_index,
                        backend,
                        case,
                        sample,
                    });
                }
            }
        }
    }
    if jobs.is_empty() {
        return Err(PlanError::Empty);
    }
    Ok(Plan {
        backends,
        groups,
        jobs,
    })
}

/// How many of `samples` must pass: `min-pass` when given (at most all of them), else all.
pub fn required_passes(min_pass: Option<u32>, samples: u32) -> u32 {
    min_pass.map_or(samples, |k| k.min(samples))
}

/// The verdict of one case over its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// No verdict: a sample failed to run (backend error, interrupted) or an assertion could
    /// not be judged, and the samples that did pass are not enough on their own.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }
}

/// Adds up the samples of a case: `Some(pass)` per judged sample, `None` for a sample without a
/// verdict. Passes when at least `required` samples passed; fails when even the unjudged ones
/// passing could not reach that; otherwise there is no verdict.
pub fn aggregate(samples: &[Option<bool>], required: u32) -> Verdict {
    let passed = samples.iter().filter(|s| **s == Some(true)).count();
    let unjudged = samples.iter().filter(|s| s.is_none()).count();
    let required = required as usize;
    if passed >= required && !samples.is_empty() {
        Verdict::Pass
    } else if passed + unjudged < required || unjudged == 0 {
        Verdict::Fail
    } else {
        Verdict::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(prompt: &str, cases: usize, backends: &[&str]) -> UnitSpec {
        UnitSpec {
            prompt: prompt.to_owned(),
            cases,
            backends: backends.iter().map(|b| (*b).to_owned()).collect(),
        }
    }

    #[test]
    fn matrix_of_cases_backends_and_samples() {
        let plan = plan(&[unit("a", 2, &["x", "y"]), unit("b", 1, &["y"])], 2).unwrap();
        assert_eq!(plan.backends, ["x", "y"]);
        assert_eq!(
            plan.groups,
            [
                Group {
                    unit: 0,
                    backend: 0
                },
                Group {
                    unit: 0,
                    backend: 1
                },
                Group {
                    unit: 1,
                    backend: 1
                }
            ]
        );
        assert_eq!(plan.jobs.len(), 2 * 2 * 2 + 2);
        let first: Vec<(usize, usize, u32)> = plan.jobs[..4]
            .iter()
            .map(|j| (j.group, j.case, j.sample))
            .collect();
        assert_eq!(first, [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]);
        let queues = plan.queues();
        assert_eq!(queues[0].len(), 4);
        assert_eq!(queues[1].len(), 6);
    }

    #[test]
    fn duplicates_and_errors() {
        let plan = plan(&[unit("a", 1, &["x", "x"])], 1).unwrap();
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(
            super::plan(&[unit("a", 1, &["x"])], 0),
            Err(PlanError::NoSamples)
        );
        assert_eq!(
            super::plan(&[unit("a", 1, &[])], 1),
            Err(PlanError::NoBackend("a".into()))
        );
        assert_eq!(
            super::plan(&[unit("a", 0, &["x"])], 1),
            Err(PlanError::Empty)
        );
        assert!(matches!(
            super::plan(&[unit("a", 1000, &["x"])], 10_000),
            Err(PlanError::TooLarge { .. })
        ));
    }

    #[test]
    fn samples_add_up_to_a_verdict() {
        assert_eq!(required_passes(None, 3), 3);
        assert_eq!(required_passes(Some(2), 3), 2);
        assert_eq!(required_passes(Some(5), 3), 3);
        let (t, f, n) = (Some(true), Some(false), None);
        assert_eq!(aggregate(&[t], 1), Verdict::Pass);
        assert_eq!(aggregate(&[f], 1), Verdict::Fail);
        assert_eq!(aggregate(&[n], 1), Verdict::Error);
        assert_eq!(aggregate(&[t, f, t], 2), Verdict::Pass);
        assert_eq!(aggregate(&[t, f, f], 2), Verdict::Fail);
        assert_eq!(aggregate(&[t, f, n], 2), Verdict::Error);
        assert_eq!(aggregate(&[f, f, n], 2), Verdict::Fail);
        assert_eq!(aggregate(&[], 0), Verdict::Fail);
    }
}
