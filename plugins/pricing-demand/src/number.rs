//! Numbers in and out of the guest without core's general float parsing and formatting: a quote's
//! fuel is mostly that machinery otherwise (the module runs on a fresh instance per decision, so the
//! configuration is parsed and the explanation formatted on every call).

/// Powers of ten that an `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A configuration value as a finite number. Every call parses the configuration (an instance is
/// fresh per decision), so the usual short decimals ("0.8", "12.5") take a fast path: at most 15
/// digits divided by an exact power of ten is one correctly rounded division, the same number
/// `str::parse` gives. Anything else (exponents, long digit strings) goes through `str::parse`.
pub fn parse_number(value: &str) -> Option<f64> {
    // `short_decimal` accepts ASCII only, so trimming ASCII whitespace first (much cheaper than
    // Unicode-aware `trim`) gives it the same text `trim` would; a value that starts and ends with
    // a digit (the usual one) has nothing to trim.
    let bytes = value.as_bytes();
    let trimmed = match (bytes.first(), bytes.last()) {
        (Some(b'0'..=b'9'), Some(b'0'..=b'9')) => bytes,
        _ => value.trim_ascii().as_bytes(),
    };
    short_decimal(trimmed)
        .or_else(|| value.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

fn short_decimal(s: &[u8]) -> Option<f64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    // The usual values ("2", "0.8", "0.25") without the loop: a few instructions each, and the same
    // division the loop would end with.
    let d = |b: u8| u64::from(b.wrapping_sub(b'0'));
    let (mantissa, decimals) = match *digits {
        [a] if d(a) < 10 => (d(a), 0),
        [a, b'.', b] if d(a) < 10 && d(b) < 10 => (d(a) * 10 + d(b), 1),
        [a, b'.', b, c] if d(a) < 10 && d(b) < 10 && d(c) < 10 => {
            (d(a) * 100 + d(b) * 10 + d(c), 2)
        }
        _ => return long_decimal(negative, digits),
    };
    let v = mantissa as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

fn long_decimal(negative: bool, digits: &[u8]) -> Option<f64> {
    // At most 15 digits (and a point): the mantissa stays below 10^15 < 2^53, exact in an f64.
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut mantissa, mut point) = (0u64, None);
    for (i, &b) in digits.iter().enumerate() {
        let digit = b.wrapping_sub(b'0');
        if digit < 10 {
            mantissa = mantissa * 10 + u64::from(digit);
        } else if b == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    let count = digits.len() - usize::from(point.is_some());
    if count == 0 || count > 15 {
        return None;
    }
    let decimals = point.map_or(0, |p| digits.len() - 1 - p);
    let v = mantissa as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

/// Appends `x` with `decimals` digits after the point, the same text as `format!("{x:.decimals$}")`
/// (the exact binary value rounded half to even) without core's general float formatting, which
/// costs thousands of instructions per number.
pub fn push_fixed(out: &mut String, x: f64, decimals: u32) {
    if !x.is_finite() || x.abs() >= 1e12 || decimals > 6 {
        return push_formatted(out, x, decimals);
    }
    let Some(mut n) = rounded_fast(x.abs(), decimals).or_else(|| rounded_exact(x, decimals)) else {
        return push_formatted(out, x, decimals);
    };
    // Digits from the last: the fraction, the point, the integer part, the sign.
    let mut text = [0u8; 32];
    let mut i = text.len();
    for _ in 0..decimals {
        i -= 1;
        text[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    if decimals > 0 {
        i -= 1;
        text[i] = b'.';
    }
    i = write_digits(&mut text[..i], n);
    if x.is_sign_negative() {
        i -= 1;
        text[i] = b'-';
    }
    push_ascii(out, &text[i..]);
}

/// `|x| × 10^decimals` rounded half to even from the exact binary value of `x`, for the rare number
/// the fast path cannot settle; None when it is too large for the u64 arithmetic (core formats it).
fn rounded_exact(x: f64, decimals: u32) -> Option<u64> {
    // |x| = m × 2^e exactly.
    let bits = x.to_bits();
    let (exponent, fraction) = (((bits >> 52) & 0x7ff) as i32, bits & ((1 << 52) - 1));
    let (m, e) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), exponent - 1075)
    };
    if m == 0 {
        Some(0)
    } else if e >= 0 {
        None
    } else {
        scaled_rounded(m, e.unsigned_abs(), POW10_INT[decimals as usize])
    }
}

/// The fast path of [`push_fixed`], a few instructions: `y = a × 10^decimals` in floating point is
/// the exact product correctly rounded, so below 2^32 it is within 2^-21 of it, and the exact product
/// rounds (half to even) to the same integer as `y` unless `y` lies within 10^-6 of a half-integer.
/// There (a tie such as 0.125 to two decimals, or a near one) None sends the caller to the exact
/// path.
fn rounded_fast(a: f64, decimals: u32) -> Option<u64> {
    let y = a * POW10[decimals as usize];
    if y >= 4.0e9 {
        return None;
    }
    let whole = y as u64;
    let fraction = y - whole as f64;
    let off_half = fraction - 0.5;
    if off_half > 1e-6 {
        Some(whole + 1)
    } else if off_half < -1e-6 {
        Some(whole)
    } else {
        None
    }
}

const POW10_INT: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

fn push_formatted(out: &mut String, x: f64, decimals: u32) {
    use core::fmt::Write as _;
    let _ = write!(out, "{x:.*}", decimals as usize);
}

/// `m × pow / 2^s` rounded to an integer, ties to even, in u64 arithmetic (wasm has no 128-bit
/// multiply or shift; compiler-builtins' are calls of a hundred instructions each). `m < 2^53`,
/// `pow <= 10^6`. None when `s < 26` (the value is at least 2^27: not a price, formatted by core).
fn scaled_rounded(m: u64, s: u32, pow: u64) -> Option<u64> {
    const LOW: u32 = 26;
    const MASK: u64 = (1 << LOW) - 1;
    if s < LOW {
        return None;
    }
    // m × pow = c × 2^26 + low, with c < 2^48 and low < 2^26.
    let b = (m & MASK) * pow;
    let c = (m >> LOW) * pow + (b >> LOW);
    let low = b & MASK;
    let k = s - LOW;
    if k >= 50 {
        // c < 2^48 <= 2^(k-1): less than half.
        return Some(0);
    }
    let q = c >> k;
    let up = if k == 0 {
        low > 1 << (LOW - 1) || (low == 1 << (LOW - 1) && q & 1 == 1)
    } else {
        let (rest, half) = (c & ((1 << k) - 1), 1u64 << (k - 1));
        rest > half || (rest == half && (low > 0 || q & 1 == 1))
    };
    Some(q + u64::from(up))
}

pub fn push_u32(out: &mut String, n: u32) {
    let mut text = [0u8; 10];
    let i = write_digits(&mut text, u64::from(n));
    push_ascii(out, &text[i..]);
}

fn push_ascii(out: &mut String, text: &[u8]) {
    debug_assert!(text.is_ascii());
    // SAFETY: callers pass ASCII digits, '.' and '-' only.
    out.push_str(unsafe { core::str::from_utf8_unchecked(text) });
}

/// Writes `n` in decimal at the end of `text` (long enough for it); returns where it starts.
fn write_digits(text: &mut [u8], mut n: u64) -> usize {
    let mut i = text.len();
    loop {
        i -= 1;
        text[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the test needs no dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn fixed_decimals_match_core_formatting() {
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            0.125,
            0.375,
            1.005,
            1.015,
            1.125,
            2.675,
            0.9,
            1.95,
            2.34,
            2.25,
            99.5,
            100.0,
            89.99999,
            0.004999,
            0.005,
            1e-300,
            5e-324,
            123456.789,
            999999.99995,
            -1.25,
            -0.001,
            12.345678,
            134217727.99,
            134217728.5,
            1e-7,
            4.9e-6,
            5e-7,
            0.00005,
            0.000049999,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            let r = next(&mut state);
            values.push(f64::from_bits(r) % 1e6);
            values.push((r % 10_000_000) as f64 / 1_000.0);
            values.push((r % 1_000_000) as f64 / 8.0 / 10_000.0);
        }
        for x in values.into_iter().filter(|x| x.is_finite()) {
            for decimals in 0..=4 {
                let mut mine = String::new();
                push_fixed(&mut mine, x, decimals);
                assert_eq!(
                    mine,
                    format!("{x:.*}", decimals as usize),
                    "{x:e} .{decimals}"
                );
            }
        }
        let mut n = String::new();
        push_u32(&mut n, 0);
        n.push(' ');
        push_u32(&mut n, u32::MAX);
        assert_eq!(n, format!("0 {}", u32::MAX));
    }

    #[test]
    fn short_decimals_parse_as_str_parse_does() {
        let inputs = [
            "0.8",
            "2.5",
            " 0.5 ",
            "1",
            "1.",
            ".5",
            "+.5",
            "-0",
            "-0.1",
            "0.1",
            "0.3",
            "123456789.012345",
            "1234567890123456",
            "1e3",
            "inf",
            "NaN",
            "",
            ".",
            "-",
            "1.2.3",
            "0x1",
            "1_0",
            "0.000000000000001",
            "9007199254740993",
            "3.14159265358979",
            "0.25",
            "9.99",
            "-0.25",
            "+2",
            "0.0",
            "2.",
            "0.1a",
            "a.12",
        ];
        for input in inputs {
            let expected = input.trim().parse::<f64>().ok().filter(|v| v.is_finite());
            let got = parse_number(input);
            assert_eq!(
                got.map(f64::to_bits),
                expected.map(f64::to_bits),
                "{input:?}"
            );
        }
        let mut state = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            let r = next(&mut state);
            let text = format!(
                "{}.{:0width$}",
                r % 100_000,
                (r >> 20) % 1_000_000,
                width = (r >> 50) as usize % 7
            );
            let expected = text.parse::<f64>().ok();
            assert_eq!(
                parse_number(&text).map(f64::to_bits),
                expected.map(f64::to_bits),
                "{text}"
            );
        }
    }
}
