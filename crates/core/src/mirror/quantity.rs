//! Kubernetes resource quantities (`20Gi`, `500M`, `1.5e9`) as numbers, to size the cache from
//! the volume and to compare a quantity with the API server's canonical spelling of it.

/// A string that is not a Kubernetes quantity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{input:?} is not a quantity: use a number with an optional unit, e.g. 20Gi, 500Mi or 100G ({problem})"
)]
pub struct QuantityError {
    input: String,
    problem: &'static str,
}

/// The value of a quantity. Precision beyond an `f64` does not matter for sizes and comparisons.
pub fn parse_quantity(input: &str) -> Result<f64, QuantityError> {
    let fail = |problem| QuantityError {
        input: input.to_owned(),
        problem,
    };
    let text = input.trim();
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_len = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(fail("it does not start with a number"));
    }
    let number: f64 = number
        .parse()
        .map_err(|_| fail("the number is malformed"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..]
                .parse()
                .map_err(|_| fail("the exponent after 'e' is not a whole number"))?;
            10f64.powi(power)
        }
        _ => return Err(fail("the unit is unknown (Ki, Mi, Gi, Ti, k, M, G, T, …)")),
    };
    Ok(sign * number * multiplier)
}

/// Whether two quantity strings denote the same amount (the API server may respell one, e.g.
/// `1.5Gi` as `1536Mi`). Unparseable strings are only equal to themselves.
pub fn same_quantity(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (parse_quantity(a), parse_quantity(b)) {
        (Ok(a), Ok(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(parse_quantity("20Gi"), Ok(20.0 * 1024f64.powi(3)));
        assert_eq!(parse_quantity("500M"), Ok(500e6));
        assert_eq!(parse_quantity("1.5Ki"), Ok(1536.0));
        assert_eq!(parse_quantity("100m"), Ok(0.1));
        assert_eq!(parse_quantity("123"), Ok(123.0));
        assert_eq!(parse_quantity("1e3"), Ok(1000.0));
        assert_eq!(parse_quantity("2E2"), Ok(200.0));
        assert_eq!(parse_quantity("-1Gi"), Ok(-(1024f64.powi(3))));
    }

    #[test]
    fn malformed_quantities_explain_themselves() {
        for bad in ["", "Gi", "20 Gi", "20gb", "1.2.3Gi", "1eX", "."] {
            let err = parse_quantity(bad).expect_err(bad);
            assert!(err.to_string().contains("is not a quantity"), "{err}");
        }
    }

    #[test]
    fn respelled_quantities_are_the_same() {
        assert!(same_quantity("1.5Gi", "1536Mi"));
        assert!(same_quantity("1G", "1000M"));
        assert!(same_quantity("20Gi", "20Gi"));
        assert!(!same_quantity("20Gi", "20G"));
        assert!(!same_quantity("x", "y"));
    }
}
