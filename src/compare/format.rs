//! How comparison numbers are written. One place, so the terminal table, the HTML tables, the
//! chart legends and the hover titles always show the same text for the same number.

/// What a missing value looks like everywhere ("–", an en dash, never a silent 0).
pub const MISSING: &str = "–";

fn or_missing(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    match v {
        Some(v) if v.is_finite() => f(v),
        _ => MISSING.to_string(),
    }
}

/// Rounds to `decimals` and turns -0 into 0, so "-0.0" never appears.
fn rounded(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let r = (v * scale).round() / scale;
    if r == 0.0 { 0.0 } else { r }
}

/// A 0..1 rate as a percentage: `0.8333` → "83.3%".
pub fn percent(v: Option<f64>) -> String {
    or_missing(v, |v| format!("{:.1}%", rounded(v * 100.0, 1)))
}

/// A difference of rates in percentage points, signed: `0.5` → "+50.0 pp".
pub fn points(v: Option<f64>) -> String {
    or_missing(v, |v| format!("{:+.1} pp", rounded(v * 100.0, 1)))
}

/// Milliseconds, whole: `1000.4` → "1000 ms".
pub fn millis(v: Option<f64>) -> String {
    or_missing(v, |v| format!("{:.0} ms", rounded(v, 0)))
}

/// Output tokens per second: "44.0 tok/s".
pub fn rate(v: Option<f64>) -> String {
    or_missing(v, |v| format!("{:.1} tok/s", rounded(v, 1)))
}

/// US dollars with precision that suits the size: "$1.16" (cents from $1 up), "$0.0116",
/// "$0.0008" (three significant digits below $1, trailing zeros dropped).
pub fn usd(v: Option<f64>) -> String {
    or_missing(v, |v| {
        if v == 0.0 {
            "$0".to_string()
        } else if v.abs() >= 1.0 {
            format!("${v:.2}")
        } else {
            // Digits after the point for 3 significant ones; at most 12, so a denormal cost
            // does not print 300 zeros.
            let decimals = (2 - v.abs().log10().floor() as i64).clamp(2, 12) as usize;
            let text = format!("{v:.decimals$}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            format!("${text}")
        }
    })
}

/// A 0..1 value on the radar axes: "0.83".
pub fn unit(v: Option<f64>) -> String {
    or_missing(v, |v| format!("{:.2}", rounded(v, 2)))
}

/// A number in SVG coordinates: one decimal is below a pixel and keeps snapshots stable.
pub fn coord(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", rounded(v, 1))
    } else {
        "0".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(percent(Some(5.0 / 6.0)), "83.3%");
        assert_eq!(percent(None), "–");
        assert_eq!(percent(Some(f64::NAN)), "–");
        assert_eq!(points(Some(0.5)), "+50.0 pp");
        assert_eq!(points(Some(-0.0004)), "+0.0 pp");
        assert_eq!(points(Some(-1.0 / 6.0)), "-16.7 pp");
        assert_eq!(millis(Some(1000.4)), "1000 ms");
        assert_eq!(rate(Some(480.0 / 10.9)), "44.0 tok/s");
        assert_eq!(usd(Some(1.16)), "$1.16");
        assert_eq!(usd(Some(0.0116)), "$0.0116");
        assert_eq!(usd(Some(0.000012)), "$0.000012");
        assert_eq!(usd(Some(0.0008)), "$0.0008");
        assert_eq!(usd(Some(0.00104)), "$0.00104");
        assert_eq!(usd(Some(0.5)), "$0.5");
        assert_eq!(usd(Some(0.999)), "$0.999");
        assert_eq!(usd(Some(1e-300)), "$0");
        assert_eq!(usd(Some(12.345)), "$12.35");
        assert_eq!(usd(Some(0.0)), "$0");
        assert_eq!(usd(None), "–");
        assert_eq!(unit(Some(7.0 / 12.0)), "0.58");
        assert_eq!(coord(-0.04), "0.0");
        assert_eq!(coord(f64::NAN), "0");
    }
}
