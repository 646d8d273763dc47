//! Joins and unnests that yield to the scheduler as they produce.
//!
//! DataFusion yields (tokio's cooperative budget) where data enters a plan,
//! at its scans and exchanges. A join or an unnest makes many batches of
//! few: a cross join of 30,000 rows with itself answers 900 million rows
//! without reading anything, and the sort above it takes them in one poll
//! that lasts as long as the query, which no time limit and no client gone
//! can end (an aborted task stops only when it yields). Wrapped in
//! `CooperativeExec`, every batch they hand up counts against the budget, so
//! the query yields every few dozen batches.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

/// The physical optimizer rule (run last).
#[derive(Debug, Default)]
pub(crate) struct YieldingJoins;

/// Operators that make more batches than they read.
fn multiplies(plan: &dyn ExecutionPlan) -> bool {
    let name = plan.name();
    name.contains("Join") || name == "UnnestExec"
}

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(if multiplies(node.as_ref()) {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldingJoins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
