//! `a || b` on strings, planned as a function call so that the bound on what
//! one call may build ([`crate::bounded`]) holds for it too: DataFusion
//! evaluates the operator in place, where `s || s` nested a few levels deep
//! doubles any string it is given.
//!
//! The function keeps the operator's meaning (NULL when either side is) and
//! its name in result columns (`a || b`); lists keep DataFusion's own
//! planning (`array_concat`, `array_append`, `array_prepend`).

use std::sync::Arc;

use arrow::compute::kernels::concat_elements::concat_elements_dyn;
use arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Plans `||` on strings in `ctx` as `concat_op`, bounded to `max_bytes` a call.
pub(crate) fn register(ctx: &mut SessionContext, max_bytes: usize) -> Result<()> {
    let function = Arc::new(crate::bounded::bounded(
        Arc::new(ConcatOp::new()),
        max_bytes,
    ));
    ctx.register_expr_planner(Arc::new(Planner { function }))
}

#[derive(Debug)]
struct Planner {
    function: Arc<ScalarUDF>,
}

fn is_text(t: &DataType) -> bool {
    !matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

impl ExprPlanner for Planner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::StringConcat
            || !is_text(&expr.left.get_type(schema)?)
            || !is_text(&expr.right.get_type(schema)?)
        {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::clone(&self.function), vec![expr.left, expr.right]),
        )))
    }
}

/// `left || right` on strings: NULL when either is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOp {
    signature: Signature,
}

impl ConcatOp {
    fn new() -> Self {
        ConcatOp {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ConcatOp {
    fn name(&self) -> &str {
        "concat_op"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Named as the operator it stands for.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} || {}",
            args[0].schema_name(),
            args[1].schema_name()
        ))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let large = arg_types.contains(&DataType::LargeUtf8);
        let views = arg_types.iter().all(|t| *t == DataType::Utf8View);
        let to = if large {
            DataType::LargeUtf8
        } else if views {
            DataType::Utf8View
        } else {
            DataType::Utf8
        };
        Ok(vec![to; arg_types.len()])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let joined = concat_elements_dyn(&arrays[0], &arrays[1])?;
        Ok(if scalars {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&joined, 0)?)
        } else {
            ColumnarValue::Array(joined)
        })
    }
}
