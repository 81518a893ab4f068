//! What a call costs in credits: exact integer arithmetic, rounded up to the micro-credit once.

use ledger::{AMOUNT_MAX_MICROS, Amount};

use super::price::{
    CreditsPerUsd, ModelPrice, PERCENT_SCALE, PRICE_SCALE, Percent, RATE_SCALE, UsdPerMtok,
};
use super::tokens::Tokens;

/// Why a cost cannot be computed: the numbers are beyond what an amount holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostOverflow;

/// How prices become credits: the rate, and the markup of models that set
/// none of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    /// Credits per USD.
    pub credits_per_usd: CreditsPerUsd,
    /// The default markup.
    pub markup: Percent,
}

/// The parts of a cost before rounding: the sum of tokens × price of every
/// class, in picodollars per million tokens × tokens.
fn usd_picos_per_million(price: &ModelPrice, tokens: &Tokens) -> Option<u128> {
    let classes: [(u64, UsdPerMtok); 5] = [
        (tokens.input, price.input),
        (tokens.cached, price.cached_input_price()),
        (tokens.cache_write, price.cache_write_price()),
        (tokens.output, price.output),
        (tokens.reasoning, price.reasoning_price()),
    ];
    classes.iter().try_fold(0u128, |sum, (count, price)| {
        sum.checked_add(u128::from(*count).checked_mul(price.picos())?)
    })
}

/// `sum` (tokens × picodollars per million tokens) in micro-credits at
/// `rate` with `markup`, rounded up.
///
/// micro-credits = tokens × USD/Mtok × credits/USD × (1 + markup): the
/// million of "per million tokens" and the million micro-credits of a
/// credit cancel out.
fn to_micros(sum: u128, rate: CreditsPerUsd, markup: Percent) -> Result<Amount, CostOverflow> {
    let hundred_percent = 100 * 10u128.pow(PERCENT_SCALE);
    let numerator = sum
        .checked_mul(u128::from(rate.units()))
        .and_then(|n| n.checked_mul(hundred_percent + u128::from(markup.units())))
        .ok_or(CostOverflow)?;
    let denominator = 10u128.pow(PRICE_SCALE) * 10u128.pow(RATE_SCALE) * hundred_percent;
    let micros = numerator.div_ceil(denominator);
    if micros > AMOUNT_MAX_MICROS as u128 {
        return Err(CostOverflow);
    }
    Ok(Amount::from_micros(micros as i64))
}

/// What `tokens` of the model cost, with the model's markup or the
/// default: what a call in credits mode is charged.
pub fn cost(price: &ModelPrice, tokens: &Tokens, rate: Rate) -> Result<Amount, CostOverflow> {
    let sum = usd_picos_per_million(price, tokens).ok_or(CostOverflow)?;
    to_micros(
        sum,
        rate.credits_per_usd,
        price.markup_percent.unwrap_or(rate.markup),
    )
}

/// What `tokens` cost at the list price, without markup: what a BYOK call
/// is recorded at, and what its platform fee is a share of.
pub fn list_cost(
    price: &ModelPrice,
    tokens: &Tokens,
    rate: CreditsPerUsd,
) -> Result<Amount, CostOverflow> {
    let sum = usd_picos_per_million(price, tokens).ok_or(CostOverflow)?;
    to_micros(sum, rate, Percent::ZERO)
}

/// `fee` percent of `amount`, rounded up to the micro-credit.
pub fn fee(amount: Amount, fee: Percent) -> Result<Amount, CostOverflow> {
    let micros = u128::try_from(amount.micros()).map_err(|_| CostOverflow)?;
    let hundred_percent = 100 * 10u128.pow(PERCENT_SCALE);
    let fee = micros
        .checked_mul(u128::from(fee.units()))
        .ok_or(CostOverflow)?
        .div_ceil(hundred_percent);
    i64::try_from(fee)
        .map(Amount::from_micros)
        .map_err(|_| CostOverflow)
}

/// The most a call may cost: every one of `input_max` input tokens at the
/// dearest input price, and every one of `output_max` output tokens at the
/// dearest output price. What is held before the call.
pub fn worst_case(
    price: &ModelPrice,
    input_max: u64,
    output_max: u64,
    rate: Rate,
) -> Result<Amount, CostOverflow> {
    let input = price
        .input
        .max(price.cached_input_price())
        .max(price.cache_write_price());
    let output = price.output.max(price.reasoning_price());
    let sum = u128::from(input_max)
        .checked_mul(input.picos())
        .and_then(|i| i.checked_add(u128::from(output_max).checked_mul(output.picos())?))
        .ok_or(CostOverflow)?;
    to_micros(
        sum,
        rate.credits_per_usd,
        price.markup_percent.unwrap_or(rate.markup),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::price::Mode;

    fn price(input: &str, output: &str) -> ModelPrice {
        ModelPrice {
            provider: "openai".into(),
            mode: Mode::Chat,
            upstreams: vec![],
            upstream_model: None,
            input: UsdPerMtok::parse(input).unwrap(),
            cached_input: None,
            cache_write: None,
            output: UsdPerMtok::parse(output).unwrap(),
            reasoning: None,
            context_window: None,
            max_output_tokens: None,
            markup_percent: None,
        }
    }

    fn rate(markup: u64) -> Rate {
        Rate {
            credits_per_usd: CreditsPerUsd::whole(100),
            markup: Percent::whole(markup),
        }
    }

    #[test]
    fn a_million_tokens_at_one_dollar_is_a_hundred_credits_plus_markup() {
        let tokens = Tokens {
            input: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(
            cost(&price("1", "0"), &tokens, rate(0)),
            Ok(Amount::credits(100))
        );
        assert_eq!(
            cost(&price("1", "0"), &tokens, rate(10)),
            Ok(Amount::credits(110))
        );
    }

    #[test]
    fn a_small_call_is_rounded_up_once_to_the_micro_credit() {
        // 7 input tokens at 0.15 USD/M and 3 output tokens at 0.6 USD/M:
        // 7 × 0.15 + 3 × 0.6 = 2.85 USD/M·tokens = 0.00000285 USD
        // = 0.000285 credits = 285 micro-credits; × 1.1 = 313.5 → 314.
        let tokens = Tokens {
            input: 7,
            output: 3,
            ..Tokens::default()
        };
        let p = price("0.15", "0.6");
        assert_eq!(cost(&p, &tokens, rate(0)), Ok(Amount::from_micros(285)));
        assert_eq!(cost(&p, &tokens, rate(10)), Ok(Amount::from_micros(314)));
        // Rounding each class apart would give 105 + 180 → 116 + 198 = 314
        // here too, but one token at a thousandth of a micro-credit is 1,
        // not 0, and ten of them are 1, not 10.
        let cheap = price("0.001", "0");
        let one = Tokens {
            input: 1,
            ..Tokens::default()
        };
        let ten = Tokens {
            input: 10,
            ..Tokens::default()
        };
        assert_eq!(cost(&cheap, &one, rate(0)), Ok(Amount::from_micros(1)));
        assert_eq!(cost(&cheap, &ten, rate(0)), Ok(Amount::from_micros(1)));
    }

    #[test]
    fn cached_and_cache_write_tokens_are_billed_at_their_own_prices() {
        let mut p = price("3", "15");
        p.cached_input = Some(UsdPerMtok::parse("0.3").unwrap());
        p.cache_write = Some(UsdPerMtok::parse("3.75").unwrap());
        let tokens = Tokens::anthropic(100, 10_000, 1_000, 200);
        // 100 × 3 + 10,000 × 0.3 + 1,000 × 3.75 + 200 × 15 = 10,050 → 1,005,000 µ
        assert_eq!(
            cost(&p, &tokens, rate(0)),
            Ok(Amount::from_micros(1_005_000))
        );
        // OpenAI's way of counting the same cached tokens gives the same
        // cost: the cached ones are not billed twice.
        let q = {
            let mut q = price("3", "15");
            q.cached_input = p.cached_input;
            q
        };
        let openai = Tokens::openai(10_100, 10_000, 200, 0);
        assert_eq!(cost(&q, &openai, rate(0)), Ok(Amount::from_micros(630_000)));
    }

    #[test]
    fn reasoning_is_output_unless_priced_apart() {
        let mut p = price("0", "10");
        let tokens = Tokens::openai(0, 0, 100, 60);
        assert_eq!(cost(&p, &tokens, rate(0)), Ok(Amount::from_micros(100_000)));
        p.reasoning = Some(UsdPerMtok::parse("20").unwrap());
        assert_eq!(cost(&p, &tokens, rate(0)), Ok(Amount::from_micros(160_000)));
    }

    #[test]
    fn a_models_own_markup_wins_over_the_default() {
        let mut p = price("1", "0");
        p.markup_percent = Some(Percent::whole(0));
        let tokens = Tokens {
            input: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(cost(&p, &tokens, rate(10)), Ok(Amount::credits(100)));
        assert_eq!(
            list_cost(&price("1", "0"), &tokens, CreditsPerUsd::whole(100)),
            Ok(Amount::credits(100))
        );
    }

    #[test]
    fn the_worst_case_covers_any_split_of_the_same_tokens() {
        let mut p = price("3", "15");
        p.cache_write = Some(UsdPerMtok::parse("3.75").unwrap());
        p.reasoning = Some(UsdPerMtok::parse("20").unwrap());
        let bound = worst_case(&p, 1000, 500, rate(10)).unwrap();
        for tokens in [
            Tokens::anthropic(1000, 0, 0, 500),
            Tokens::anthropic(0, 0, 1000, 500),
            Tokens::openai(1000, 1000, 500, 500),
        ] {
            assert!(cost(&p, &tokens, rate(10)).unwrap() <= bound);
        }
    }

    #[test]
    fn fees_are_a_share_rounded_up() {
        assert_eq!(
            fee(Amount::from_micros(1000), Percent::whole(5)),
            Ok(Amount::from_micros(50))
        );
        assert_eq!(
            fee(Amount::from_micros(1), Percent::whole(5)),
            Ok(Amount::from_micros(1))
        );
        assert_eq!(
            fee(Amount::from_micros(1000), Percent::ZERO),
            Ok(Amount::ZERO)
        );
    }

    #[test]
    fn absurd_numbers_overflow_as_an_error_not_a_wrap() {
        let p = price("1000000", "1000000");
        let tokens = Tokens {
            input: u64::MAX,
            ..Tokens::default()
        };
        assert_eq!(cost(&p, &tokens, rate(10)), Err(CostOverflow));
    }

    proptest::proptest! {
        #[test]
        fn cost_is_never_below_the_exact_value_nor_a_micro_credit_above(
            input in 0u64..10_000_000, output in 0u64..1_000_000,
            input_picos in 0u128..100_000_000_000_000, output_picos in 0u128..100_000_000_000_000,
        ) {
            let mut p = price("0", "0");
            p.input = UsdPerMtok::from_picos(input_picos);
            p.output = UsdPerMtok::from_picos(output_picos);
            let tokens = Tokens { input, output, ..Tokens::default() };
            let micros = cost(&p, &tokens, rate(0)).unwrap().micros() as u128;
            // exact micro-credits × 10^12 = tokens × picos × 100 (credits per USD)
            let exact_scaled = (u128::from(input) * input_picos + u128::from(output) * output_picos) * 100;
            let scale = 10u128.pow(12);
            proptest::prop_assert!(micros * scale >= exact_scaled);
            proptest::prop_assert!(micros * scale < exact_scaled + scale);
        }
    }
}
