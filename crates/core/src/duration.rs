//! Go-style duration strings (`24h`, `1h30m`, `90s`), as `metav1.Duration` and the seed's env vars use.

use std::time::Duration;

/// A duration string that is not a Go duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{input:?} is not a duration: use a number with a unit, e.g. 24h, 90m, 30s or 1h30m ({problem})"
)]
pub struct DurationError {
    input: String,
    problem: &'static str,
}

/// Parses a Go duration such as `24h`, `1h30m`, `1.5h`, `90s` or `250ms` (negative durations are refused).
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |problem| DurationError {
        input: input.to_owned(),
        problem,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("a unit is missing after the last number"))?;
        if number_len == 0 {
            return Err(fail("expected a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| fail("a number is malformed"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(fail("units are ns, us, ms, s, m and h")),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| fail("it is too large"))
}

/// Formats a duration the way Go prints it, in whole seconds (`24h0m0s`, `1m30s`, `45s`).
pub fn format_go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("24h", 86_400.0),
            ("1h30m", 5_400.0),
            ("1.5h", 5_400.0),
            ("90s", 90.0),
            ("250ms", 0.25),
            ("24h0m0s", 86_400.0),
            ("0", 0.0),
            ("2us", 2e-6),
        ];
        for (input, secs) in cases {
            let parsed = parse_go_duration(input).expect(input);
            assert!((parsed.as_secs_f64() - secs).abs() < 1e-9, "{input}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for input in ["", "24", "h", "1d", "-1h", "1h30", "1..5h", " 1h"] {
            let err = parse_go_duration(input).expect_err(input);
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(86_400)), "24h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(45)), "45s");
        let round_trip = parse_go_duration(&format_go_duration(Duration::from_secs(3_725)));
        assert_eq!(round_trip, Ok(Duration::from_secs(3_725)));
    }
}
