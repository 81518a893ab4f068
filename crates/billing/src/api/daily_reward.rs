//! The daily reward: claim today's, and read whether it is claimed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use server::error::ApiError;
use server::extract::{ExistingAccount, PathAccount};
use server::openapi::Doc;
use server::openapi::schema::AccountPath;
use server::render::{self, Decimal, GrantView, Instant};
use server::routes::Routes;
use server::{Access, Route};
use store::{Command, Executed, Op, Outcome, Refused};
use utoipa::ToSchema;

use crate::Billing;
use crate::daily;
use crate::error::BillingError;
use crate::settings;

use super::{BillingState, refused};

/// The daily reward's routes.
pub(super) fn routes(routes: &Routes<Arc<Billing>>) -> Vec<Route> {
    use Access::Account;
    vec![
        routes.route(Account, Doc::of::<__path_claim>(), claim),
        routes.route(Account, Doc::of::<__path_get>(), get),
    ]
}

/// A daily reward claim's answer.
#[derive(Serialize, ToSchema)]
struct DailyRewardView<'a> {
    /// True when this request granted it; false when it was claimed before today.
    granted: bool,
    /// The reward's lot.
    grant: GrantView<'a>,
    /// When the next reward can be claimed: the start of the next UTC day.
    next_claim_at: Instant,
}

/// Claim today's daily reward
///
/// Grants today's reward (the UTC day) once: a second claim the same day
/// answers 200 with the first claim and grants nothing. Days not claimed do
/// not pile up.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account_id}/daily-reward",
    tag = "billing",
    operation_id = "claimDailyReward",
    params(AccountPath),
    responses(
        (status = 201, description = "Granted now.", body = DailyRewardView),
        (status = 200, description = "Already claimed today: the first claim.", body = DailyRewardView),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
        (status = 409, description = "`daily_reward_disabled`."),
    ),
)]
async fn claim(
    State(billing): BillingState,
    PathAccount(account): PathAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let settings = settings::read(store, &billing.env).await?;
    if !settings.daily_reward.enabled || !settings.daily_reward.amount.is_positive() {
        return Err(BillingError::DailyRewardDisabled.into());
    }
    let now = billing.clock.now();
    let (_, date) = daily::day_of(now);
    let claimed = |tx: Option<ledger::Transaction>| async move {
        let Some(tx) = tx else {
            return Ok::<_, ApiError>(None);
        };
        let lot = match tx.lot {
            Some(id) => store.lot(id).await?,
            None => None,
        };
        let lot = lot
            .ok_or_else(|| ApiError::Internal(format!("the daily reward {} has no lot", tx.id)))?;
        Ok(Some((lot, tx.created_at)))
    };
    // Today's claim, when there is one, whatever the settings say now: a
    // change to the amount during the day does not grant it again.
    let first = claimed(
        store
            .external(account.clone(), daily::external_id(&date))
            .await?,
    )
    .await?;
    let (status, granted, lot, at) = match first {
        Some((lot, at)) => (StatusCode::OK, false, lot, at),
        None => {
            let executed = store
                .execute(Command::new(Op::Grant {
                    account: account.clone(),
                    grant: daily::grant(&settings, now),
                }))
                .await?;
            match executed {
                Executed::Fresh(Ok(Outcome::Granted { lot, tx })) => {
                    (StatusCode::CREATED, true, lot, tx.created_at)
                }
                Executed::Existing(Outcome::Granted { lot, tx }) => {
                    (StatusCode::OK, false, lot, tx.created_at)
                }
                // A claim made meanwhile under other settings won.
                Executed::Fresh(Err(Refused::Ledger(ledger::Reject::ExternalIdConflict))) => {
                    let won = store
                        .external(account.clone(), daily::external_id(&date))
                        .await?;
                    let (lot, at) = claimed(won).await?.ok_or_else(|| {
                        ApiError::Internal("a daily reward conflicted with none".into())
                    })?;
                    (StatusCode::OK, false, lot, at)
                }
                Executed::Fresh(Err(other)) => return Err(refused(other)),
                other => {
                    return Err(ApiError::Internal(format!(
                        "a daily reward answered {other:?}"
                    )));
                }
            }
        }
    };
    let mut response = render::json(
        status,
        &DailyRewardView {
            granted,
            grant: GrantView::new(&lot, at),
            next_claim_at: Instant(daily::next_claim(now)),
        },
    );
    if !granted {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Whether today's daily reward is claimed.
#[derive(Serialize, ToSchema)]
struct DailyRewardStatus {
    /// Whether it is on.
    enabled: bool,
    /// Whether today's (UTC) is claimed.
    claimed: bool,
    /// When it was claimed, if it was.
    claimed_at: Option<Instant>,
    /// What a claim grants now.
    amount: Decimal,
    /// When the next reward can be claimed: now if today's is not, else the
    /// start of the next UTC day.
    next_claim_at: Instant,
}

/// Get the daily reward's status
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}/daily-reward",
    tag = "billing",
    operation_id = "getDailyReward",
    params(AccountPath),
    responses(
        (status = 200, description = "Whether today's reward is claimed.", body = DailyRewardStatus),
        (status = 400, description = "`invalid_id`."),
        (status = 404, description = "`account_not_found`."),
    ),
)]
async fn get(
    State(billing): BillingState,
    ExistingAccount(account): ExistingAccount,
) -> Result<Response, ApiError> {
    let store = billing.store.as_ref();
    let settings = settings::read(store, &billing.env).await?;
    let now = billing.clock.now();
    let (_, date) = daily::day_of(now);
    let claim = store
        .external(account.clone(), daily::external_id(&date))
        .await?;
    Ok(render::json(
        StatusCode::OK,
        &DailyRewardStatus {
            enabled: settings.daily_reward.enabled,
            claimed: claim.is_some(),
            claimed_at: claim.as_ref().map(|tx| Instant(tx.created_at)),
            amount: Decimal(settings.daily_reward.amount),
            next_claim_at: Instant(if claim.is_some() {
                daily::next_claim(now)
            } else {
                now
            }),
        },
    ))
}
