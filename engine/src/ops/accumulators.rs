//! Aggregate calls (`avg(temp)`, `count(*) FILTER (WHERE ...)`) as DataFusion plans them, and the
//! groups of keys they accumulate over.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::Result;

/// One aggregate of a query. Accumulators come from DataFusion: its `GroupsAccumulator` where the
/// function has one, else its plain `Accumulator` behind DataFusion's adapter.
pub struct AggregateCall {
    pub expr: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The arguments, then the `ORDER BY` expressions of order-sensitive aggregates.
    inputs: Vec<Arc<dyn PhysicalExpr>>,
}

impl AggregateCall {
    pub fn new(expr: Arc<AggregateFunctionExpr>, filter: Option<Arc<dyn PhysicalExpr>>) -> Self {
        let mut inputs = expr.expressions();
        inputs.extend(expr.order_bys().iter().map(|s| Arc::clone(&s.expr)));
        Self {
            expr,
            filter,
            inputs,
        }
    }

    pub fn name(&self) -> &str {
        self.expr.name()
    }

    pub fn new_accumulator(&self) -> Result<Box<dyn GroupsAccumulator>> {
        if self.expr.groups_accumulator_supported() {
            return Ok(self.expr.create_groups_accumulator()?);
        }
        let expr = Arc::clone(&self.expr);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            expr.create_accumulator()
        })))
    }

    /// Creates the call's accumulators once, so that an aggregate DataFusion cannot compute for
    /// these argument types (`approx_distinct` of a DOUBLE) is an error when the query is planned,
    /// not when its first rows arrive.
    pub fn check(&self) -> datafusion::error::Result<()> {
        self.expr.create_accumulator()?;
        if self.expr.groups_accumulator_supported() {
            self.expr.create_groups_accumulator()?;
        }
        Ok(())
    }

    /// The values the accumulator is updated with, for every row of `batch`.
    pub fn inputs(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.inputs
            .iter()
            .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
            .collect()
    }

    /// The `FILTER (WHERE ...)` mask, if the call has one.
    pub fn filter_mask(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        match &self.filter {
            None => Ok(None),
            Some(f) => {
                let mask = f.evaluate(batch)?.into_array(batch.num_rows())?;
                Ok(Some(mask.as_boolean().clone()))
            }
        }
    }
}

/// The distinct key values of a window (or pane), each with a dense group index.
pub(crate) enum KeyGroups {
    /// No keys besides the window: every row is in group 0.
    Single {
        seen: bool,
    },
    Values(Box<dyn GroupValues>),
}

impl KeyGroups {
    pub fn new(key_schema: &SchemaRef) -> Result<Self> {
        if key_schema.fields().is_empty() {
            return Ok(Self::Single { seen: false });
        }
        Ok(Self::Values(new_group_values(
            Arc::clone(key_schema),
            &GroupOrdering::None,
        )?))
    }

    /// Sets `groups` to the group index of each of `rows` rows with key columns `keys`.
    pub fn intern(
        &mut self,
        keys: &[ArrayRef],
        rows: usize,
        groups: &mut Vec<usize>,
    ) -> Result<()> {
        groups.clear();
        match self {
            Self::Single { seen } => {
                *seen |= rows > 0;
                groups.resize(rows, 0);
            }
            Self::Values(v) => v.intern(keys, groups)?,
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Single { seen } => usize::from(*seen),
            Self::Values(v) => v.len(),
        }
    }

    /// The key columns of every group, in group-index order.
    pub fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        match self {
            Self::Single { .. } => Ok(Vec::new()),
            Self::Values(v) => Ok(v.emit(EmitTo::All)?),
        }
    }

    /// Memory held, in bytes.
    pub fn size(&self) -> usize {
        match self {
            Self::Single { .. } => 0,
            Self::Values(v) => v.size(),
        }
    }
}
