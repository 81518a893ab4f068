//! Exact decimals read from text as a price list or JSON writes them (`1.5e-07`, `12.5`): the
//! ledger's one decimal parser in its JSON form, never a float.

pub use ledger::decimal::{DecimalError, format_scaled};

/// Reads non-negative decimal `text` as JSON or a price list writes it,
/// multiplied by `10^shift`, as a whole count of `10^-scale` units, exactly:
/// `parse_scaled("1.5e-07", 12, 6)` reads a price per token as picodollars
/// per million tokens, `150_000_000_000`.
pub fn parse_scaled(text: &str, scale: u32, shift: i32) -> Result<u128, DecimalError> {
    ledger::decimal::parse_scaled(text, ledger::decimal::Form::JSON, scale, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_list_s_numbers_are_read_in_json_s_forms() {
        assert_eq!(parse_scaled("1.5e-07", 12, 6), Ok(150_000_000_000));
        assert_eq!(parse_scaled(" .5 ", 1, 0), Ok(5));
        assert_eq!(parse_scaled("-1", 12, 0), Err(DecimalError::Negative));
    }
}
