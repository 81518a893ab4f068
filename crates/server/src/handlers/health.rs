//! The ledger's health for operators: the last `creditd verify` run and the
//! holds pending across every account.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::render::{self, Decimal, Instant};
use crate::verify_run::{self, VerifyRun};

/// What the ledger's health check reports.
#[derive(Serialize, ToSchema)]
pub struct LedgerHealth {
    /// The last run of `creditd verify`; null when it has never run on
    /// this database.
    #[schema(required = true)]
    last_verify: Option<VerifyRunView>,
    /// The holds pending across every account.
    holds_pending: HoldsPendingView,
}

/// One run of `creditd verify`.
#[derive(Serialize, ToSchema)]
#[schema(as = VerifyRun)]
pub struct VerifyRunView {
    /// When the run checked the ledger.
    ran_at: Instant,
    /// Accounts checked.
    #[schema(minimum = 0)]
    accounts: u64,
    /// Lots checked.
    #[schema(minimum = 0)]
    lots: u64,
    /// Transactions checked.
    #[schema(minimum = 0)]
    transactions: u64,
    /// Every violation found; 0 when the ledger was clean.
    #[schema(minimum = 0)]
    violations: u64,
    /// The first violations found, at most 10, as `creditd verify` prints
    /// them.
    #[schema(max_items = 10)]
    first_violations: Vec<String>,
}

impl VerifyRunView {
    fn new(run: VerifyRun) -> VerifyRunView {
        VerifyRunView {
            ran_at: Instant(run.ran_at()),
            accounts: run.accounts,
            lots: run.lots,
            transactions: run.transactions,
            violations: run.violations,
            first_violations: run.first_violations,
        }
    }
}

/// The holds pending across every account.
#[derive(Serialize, ToSchema)]
#[schema(as = HoldsPending)]
pub struct HoldsPendingView {
    /// How many holds are pending, including those past their expiry whose
    /// release the sweep has not yet written.
    #[schema(minimum = 0)]
    count: u64,
    /// The credits they hold.
    amount: Decimal,
}

/// The ledger's health
///
/// The last run of `creditd verify` (when it ran, what it checked, how many
/// violations it found and the first of them) and the holds pending across
/// every account, counted and summed by the database.
#[utoipa::path(
    get,
    path = "/v1/health/ledger",
    tag = "system",
    operation_id = "getLedgerHealth",
    responses(
        (status = 200, description = "The ledger's health.", body = LedgerHealth),
    ),
)]
pub async fn ledger(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let store = state.store.as_ref();
    let (last, holds) = tokio::join!(verify_run::latest(store), store.pending_holds());
    let holds = holds?;
    let view = LedgerHealth {
        last_verify: last?.map(VerifyRunView::new),
        holds_pending: HoldsPendingView {
            count: holds.count,
            amount: Decimal(holds.amount),
        },
    };
    Ok(render::json(StatusCode::OK, &view))
}
