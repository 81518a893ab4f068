//! A refunded payment's share of the credits it bought.

/// The credits (in micro-credits) that `refunded` of `paid` (both in minor
/// units) takes back of the `granted` a payment bought: the same share,
/// rounded down to the micro-credit, all of them when all was refunded.
/// None when the amounts make no sense (nothing paid, a negative, more
/// refunded than paid).
pub fn refunded_share(granted: i64, paid: i64, refunded: i64) -> Option<i64> {
    if paid <= 0 || granted < 0 || refunded < 0 || refunded > paid {
        return None;
    }
    let share = i128::from(granted)
        .checked_mul(i128::from(refunded))?
        .checked_div(i128::from(paid))?;
    i64::try_from(share).ok()
}

/// What a refund of `refunded` in all takes back now, when `taken` was
/// taken back before for the same payment: nothing when an earlier, smaller
/// refund's event arrives after a later one.
pub fn still_to_take(share: i64, taken: i64) -> i64 {
    share.saturating_sub(taken).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_refund_takes_back_every_credit() {
        assert_eq!(
            refunded_share(1_000_000_000, 2_000, 2_000),
            Some(1_000_000_000)
        );
    }

    #[test]
    fn a_partial_refund_takes_back_its_share_rounded_down() {
        assert_eq!(refunded_share(1_000_000_000, 2_000, 500), Some(250_000_000));
        // 10 credits for 3 cents, 1 cent refunded: 3.333333 credits.
        assert_eq!(refunded_share(10_000_000, 3, 1), Some(3_333_333));
    }

    #[test]
    fn amounts_that_make_no_sense_take_nothing() {
        assert_eq!(refunded_share(100, 0, 0), None);
        assert_eq!(refunded_share(100, 10, 11), None);
        assert_eq!(refunded_share(100, 10, -1), None);
        assert_eq!(refunded_share(-1, 10, 1), None);
    }

    #[test]
    fn an_older_smaller_refund_after_a_larger_one_takes_nothing() {
        assert_eq!(still_to_take(250, 500), 0);
        assert_eq!(still_to_take(500, 250), 250);
    }

    proptest! {
        #[test]
        fn refunds_in_steps_take_back_what_one_refund_would(
            granted in 0i64..1_000_000_000_000,
            paid in 1i64..10_000_000,
            cuts in proptest::collection::vec(0i64..10_000_000, 1..5),
        ) {
            // Cumulative refunded amounts, in order, up to what was paid.
            let mut refunded = 0;
            let mut taken = 0;
            for cut in cuts {
                refunded = (refunded + cut % (paid + 1)).min(paid);
                let share = refunded_share(granted, paid, refunded).unwrap();
                taken += still_to_take(share, taken);
                prop_assert!(taken <= granted);
            }
            prop_assert_eq!(taken, refunded_share(granted, paid, refunded).unwrap());
        }
    }
}
