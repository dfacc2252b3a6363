//! Rule evaluation: reads samples from the store at a given time (never the clock) and
//! produces a `Transition` for every alert instance of every rule.

pub mod budget;
pub mod ptd;
pub mod window;

use std::time::Instant;

use jiff::Timestamp;

use crate::config::RuleConfig;
use crate::metrics::Metrics;
use crate::model::Transition;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "rule {rule}: account {account} is billed in {data} but the budget is in {budget}; amounts in different currencies are never compared"
    )]
    Currency {
        rule: String,
        account: String,
        budget: String,
        data: String,
    },
    #[error("series {series} is in {unit}, not money")]
    Unit { series: String, unit: String },
}

/// The result of evaluating every rule once.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub transitions: Vec<Transition>,
    /// Rules that failed, with why; the others were evaluated.
    pub errors: Vec<(String, EvalError)>,
}

pub struct Evaluator {
    rules: Vec<RuleConfig>,
}

impl Evaluator {
    pub fn new(rules: Vec<RuleConfig>) -> Self {
        Evaluator { rules }
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(RuleConfig::name)
    }

    /// Evaluates all rules at `at`. One failing rule does not stop the others.
    pub fn evaluate(&self, store: &dyn Store, at: Timestamp, metrics: &Metrics) -> Evaluation {
        let mut evaluation = Evaluation::default();
        for rule in &self.rules {
            let started = Instant::now();
            let result = match rule {
                RuleConfig::Budget(b) => budget::evaluate(b, store, at, metrics),
            };
            metrics.rule_evaluated(rule.name(), result.is_ok(), started.elapsed().as_secs_f64());
            match result {
                Ok(ts) => evaluation.transitions.extend(ts),
                Err(e) => {
                    tracing::warn!(rule = rule.name(), error = %e, "Rule evaluation failed.");
                    evaluation.errors.push((rule.name().to_string(), e));
                }
            }
        }
        evaluation
    }
}
