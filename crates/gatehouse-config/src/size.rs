//! Byte sizes as written in `max_body`: `10MiB`, `512k`, `1048576`.
//!
//! Every unit is binary (powers of 1024), whatever its spelling: `K`, `KB` and `KiB` all
//! mean 1024 bytes, `M`/`MB`/`MiB` 1024², `G`/`GB`/`GiB` 1024³. Units are
//! case-insensitive; `B` (or no unit) means bytes; spaces between the number and the
//! unit are allowed. Only whole numbers: `1.5MiB` is refused (write `1536KiB`).

/// The units, lower-case, with their multipliers. Mentioned in error messages.
const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
    ("gib", 1 << 30),
];

/// Parses a size such as `10MiB` into bytes. The error says what is wrong, for a
/// message of the form "max_body: ERROR".
///
/// ```
/// assert_eq!(gatehouse_config::parse_size("10MiB"), Ok(10 * 1024 * 1024));
/// assert_eq!(gatehouse_config::parse_size("1 kb"), Ok(1024));
/// assert!(gatehouse_config::parse_size("10 parsecs").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a size: it must start with a whole number"));
    }
    let unit = unit.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else {
        let lower = unit.to_ascii_lowercase();
        match UNITS.iter().find(|(name, _)| *name == lower) {
            Some(&(_, m)) => m,
            None if unit.starts_with(['.', ',']) => {
                return Err(format!("`{text}` is not a whole number; use a smaller unit"));
            }
            None => {
                return Err(format!(
                    "`{unit}` is not a size unit; use B, K/KB/KiB, M/MB/MiB or G/GB/GiB"
                ));
            }
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        const K: u64 = 1024;
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("1048576", 1_048_576),
            ("7B", 7),
            ("7b", 7),
            ("1K", K),
            ("1k", K),
            ("1KB", K),
            ("1kb", K),
            ("1KiB", K),
            ("1kib", K),
            ("2M", 2 * K * K),
            ("2MB", 2 * K * K),
            ("10MiB", 10 * K * K),
            ("10mib", 10 * K * K),
            ("1G", K * K * K),
            ("1GB", K * K * K),
            ("3GiB", 3 * K * K * K),
            ("10 MiB", 10 * K * K),
            ("  10MiB  ", 10 * K * K),
            ("18446744073709551615", u64::MAX),
        ];
        for &(text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn bad_sizes() {
        let bad: &[(&str, &str)] = &[
            ("", "must start with a whole number"),
            ("MiB", "must start with a whole number"),
            ("-1", "must start with a whole number"),
            ("+1", "must start with a whole number"),
            ("1.5MiB", "not a whole number"),
            ("10 parsecs", "`parsecs` is not a size unit"),
            ("10T", "`T` is not a size unit"),
            ("10 M iB", "not a size unit"),
            ("18446744073709551616", "too large"),
            ("17179869184GiB", "too large"),
        ];
        for &(text, needle) in bad {
            match parse_size(text) {
                Ok(n) => panic!("{text:?} parsed as {n}"),
                Err(e) => assert!(e.contains(needle), "{text:?}: {e}"),
            }
        }
    }
}
