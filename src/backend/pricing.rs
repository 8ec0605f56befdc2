//! Default prices of common models and the cost of a completion.
//!
//! Prices are USD per million tokens, the providers' published standard (non-batch, non-cached)
//! rates as of July 2025. They go stale: a backend's configured `prices` always override them.

use super::config::Prices;
use super::types::Usage;

/// (model prefix, input, output). Gemini 2.5 Pro: the rate for prompts up to 200k tokens.
const TABLE: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("o3-mini", 1.10, 4.40),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("gemini-2.0-flash", 0.10, 0.40),
    ("gemini-2.5-flash", 0.30, 2.50),
    ("gemini-2.5-pro", 1.25, 10.00),
];

/// The built-in price of `model`. A table name matches the model exactly or followed by a
/// dated or numbered suffix (`gpt-4o-2024-08-06`, `claude-3-5-haiku-20241022`), but not a
/// named variant (`gemini-2.5-flash-lite` is a different, cheaper model).
pub fn default_prices(model: &str) -> Option<Prices> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    TABLE
        .iter()
        .filter(|(name, _, _)| {
            model.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('-')
                        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
        })
        .max_by_key(|(name, _, _)| name.len())
        .map(|&(_, input, output)| Prices { input, output })
}

pub fn cost(usage: Usage, prices: Prices) -> f64 {
    usage.input_tokens as f64 / 1e6 * prices.input
        + usage.output_tokens as f64 / 1e6 * prices.output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert_eq!(default_prices("gpt-4o").unwrap().input, 2.50);
        assert_eq!(default_prices("gpt-4o-mini").unwrap().input, 0.15);
        assert_eq!(default_prices("gpt-4o-2024-08-06").unwrap().input, 2.50);
        assert_eq!(
            default_prices("gpt-4.1-mini-2025-04-14").unwrap().output,
            1.60
        );
        assert_eq!(
            default_prices("claude-3-5-haiku-20241022").unwrap().output,
            4.00
        );
        assert_eq!(default_prices("models/gemini-2.5-pro").unwrap().input, 1.25);
        assert!(default_prices("gemini-2.5-flash-lite").is_none());
        assert!(default_prices("llama3").is_none());
    }

    #[test]
    fn cost_formula() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
        };
        let c = cost(
            usage,
            Prices {
                input: 2.0,
                output: 8.0,
            },
        );
        assert!((c - 6.0).abs() < 1e-9);
    }
}
