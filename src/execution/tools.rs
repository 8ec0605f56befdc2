//! The tools a ReAct loop may call: the built-in calculator, local file search and date, and
//! command tools allow-listed under `[tools.NAME]` in promptdeck.toml.
//!
//! The calculator and the date are pure. Search reads files, but only inside one folder of the
//! project (symbolic links that lead out are skipped) and within size limits. Command tools run
//! without a shell, with a cleared environment (API keys live in the environment), a timeout and
//! an output cap. Every failure becomes an observation the model can read, never a panic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::project::RawTool;

/// Longest observation handed back to the model, in characters.
pub const MAX_OBSERVATION_CHARS: usize = 4_000;
/// Longest calculator expression accepted.
const MAX_EXPRESSION_CHARS: usize = 1_000;
/// Deepest nesting of parentheses, unary signs and powers the parser follows (keeps the
/// recursive descent far from the stack limit on hostile input).
const MAX_DEPTH: usize = 64;
/// Search limits: files looked at, bytes read per file, matching lines returned, chars per line.
const SEARCH_MAX_FILES: usize = 2_000;
const SEARCH_MAX_FILE_BYTES: u64 = 1024 * 1024;
const SEARCH_MAX_RESULTS: usize = 5;
const SEARCH_LINE_CHARS: usize = 300;
/// Command tools: default timeout and the most output bytes kept from each stream.
const COMMAND_DEFAULT_TIMEOUT: f64 = 10.0;
const COMMAND_OUTPUT_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Calculator

/// Evaluates an arithmetic expression: numbers, `+ - * /`, `^` or `**` (power, right
/// associative), postfix `%` (percent: `17.5%` is 0.175), parentheses, the constants `pi` and `e`
/// and the functions sqrt, abs, round, floor, ceil, ln, log (base 10), exp, sin, cos, tan, min
/// and max. Thousands separators are not accepted: commas separate function arguments.
pub fn calculate(expression: &str) -> Result<f64, String> {
    if expression.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(format!(
            "expression longer than {MAX_EXPRESSION_CHARS} characters"
        ));
    }
    let tokens = tokenize(expression)?;
    if tokens.is_empty() {
        return Err("empty expression".to_owned());
    }
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        depth: 0,
    };
    let value = parser.expression()?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(format!("unexpected {}", token.describe()));
    }
    if !value.is_finite() {
        return Err("the result is not a finite number (division by zero?)".to_owned());
    }
    Ok(value)
}

/// A result as a person would write it: integers without a decimal point, others with at most
/// ten decimals and no trailing zeros.
pub fn format_number(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        // Exact: the value is integral and within i64's range.
        return format!("{}", value as i64);
    }
    let text = format!("{value:.10}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(char),
    Open,
    Close,
    Comma,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Number(n) => format!("number {}", format_number(*n)),
            Token::Name(n) => format!("`{n}`"),
            Token::Op(c) => format!("`{c}`"),
            Token::Open => "`(`".to_owned(),
            Token::Close => "`)`".to_owned(),
            Token::Comma => "`,`".to_owned(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '0'..='9' | '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                // An exponent: 1e6, 2.5E-3.
                if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                    let mut j = i + 1;
                    if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                        j += 1;
                    }
                    if j < chars.len() && chars[j].is_ascii_digit() {
                        while j < chars.len() && chars[j].is_ascii_digit() {
                            j += 1;
                        }
                        i = j;
                    }
                }
                let literal: String = chars[start..i].iter().collect();
                let value = literal
                    .parse::<f64>()
                    .map_err(|_| format!("`{literal}` is not a number"))?;
                tokens.push(Token::Number(value));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Name(
                    chars[start..i].iter().collect::<String>().to_lowercase(),
                ));
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                tokens.push(Token::Op('^'));
                i += 2;
            }
            '+' | '-' | '*' | '/' | '^' | '%' => {
                tokens.push(Token::Op(c));
                i += 1;
            }
            '×' => {
                tokens.push(Token::Op('*'));
                i += 1;
            }
            '÷' => {
                tokens.push(Token::Op('/'));
                i += 1;
            }
            '−' => {
                tokens.push(Token::Op('-'));
                i += 1;
            }
            '(' | '[' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' | ']' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn descend(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("expression nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// sum := product (('+' | '-') product)*
    fn expression(&mut self) -> Result<f64, String> {
        self.descend()?;
        let mut value = self.product()?;
        while let Some(Token::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            let rhs = self.product()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        self.depth -= 1;
        Ok(value)
    }

    /// product := unary (('*' | '/') unary)*
    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.unary()?;
        while let Some(Token::Op(op @ ('*' | '/'))) = self.peek().cloned() {
            self.at += 1;
            let rhs = self.unary()?;
            if op == '/' && rhs == 0.0 {
                return Err("division by zero".to_owned());
            }
            value = if op == '*' { value * rhs } else { value / rhs };
        }
        Ok(value)
    }

    /// unary := ('-' | '+') unary | power. `-2^2` is -(2^2), as in mathematics.
    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(Token::Op('-')) => {
                self.at += 1;
                self.descend()?;
                let value = -self.unary()?;
                self.depth -= 1;
                Ok(value)
            }
            Some(Token::Op('+')) => {
                self.at += 1;
                self.descend()?;
                let value = self.unary()?;
                self.depth -= 1;
                Ok(value)
            }
            _ => self.power(),
        }
    }

    /// power := postfix ('^' unary)?  (right associative through `unary`)
    fn power(&mut self) -> Result<f64, String> {
        let base = self.postfix()?;
        if let Some(Token::Op('^')) = self.peek() {
            self.at += 1;
            self.descend()?;
            let exponent = self.unary()?;
            self.depth -= 1;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    /// postfix := primary '%'*
    fn postfix(&mut self) -> Result<f64, String> {
        let mut value = self.primary()?;
        while let Some(Token::Op('%')) = self.peek() {
            self.at += 1;
            value /= 100.0;
        }
        Ok(value)
    }

    fn primary(&mut self) -> Result<f64, String> {
        match self.next() {
            Some(Token::Number(n)) => Ok(n),
            Some(Token::Open) => {
                let value = self.expression()?;
                match self.next() {
                    Some(Token::Close) => Ok(value),
                    _ => Err("missing `)`".to_owned()),
                }
            }
            Some(Token::Name(name)) => match name.as_str() {
                "pi" => Ok(std::f64::consts::PI),
                "e" => Ok(std::f64::consts::E),
                _ => {
                    let args = self.arguments(&name)?;
                    apply(&name, &args)
                }
            },
            Some(token) => Err(format!("unexpected {}", token.describe())),
            None => Err("the expression ends too early".to_owned()),
        }
    }

    fn arguments(&mut self, name: &str) -> Result<Vec<f64>, String> {
        if self.next() != Some(Token::Open) {
            return Err(format!("unknown name `{name}`"));
        }
        let mut args = vec![self.expression()?];
        loop {
            match self.next() {
                Some(Token::Comma) => args.push(self.expression()?),
                Some(Token::Close) => return Ok(args),
                _ => return Err(format!("missing `)` after the arguments of `{name}`")),
            }
        }
    }
}

fn apply(name: &str, args: &[f64]) -> Result<f64, String> {
    let one = || match args {
        [x] => Ok(*x),
        _ => Err(format!("`{name}` takes one argument, got {}", args.len())),
    };
    Ok(match name {
        "sqrt" => {
            let x = one()?;
            if x < 0.0 {
                return Err("square root of a negative number".to_owned());
            }
            x.sqrt()
        }
        "abs" => one()?.abs(),
        "round" => one()?.round(),
        "floor" => one()?.floor(),
        "ceil" => one()?.ceil(),
        "ln" => one()?.ln(),
        "log" => one()?.log10(),
        "exp" => one()?.exp(),
        "sin" => one()?.sin(),
        "cos" => one()?.cos(),
        "tan" => one()?.tan(),
        "min" => args.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => args.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => return Err(format!("unknown function `{name}`")),
    })
}

// ---------------------------------------------------------------------------------------------
// Date

/// The ISO 8601 date of a moment given as seconds since the Unix epoch (UTC).
pub fn iso_date(unix_seconds: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix_seconds.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Today's date (UTC).
pub fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    iso_date(now)
}

// ---------------------------------------------------------------------------------------------
// Search

/// Searches the text files under `dir` (which must lie inside `root`, symbolic links resolved)
/// for lines containing the query's words, best matches first. Files that are too big, binary,
/// not UTF-8, or whose real location is outside `dir` are skipped.
pub fn search(root: &Path, dir: &str, query: &str) -> Result<String, String> {
    let terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| t.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect();
    if terms.is_empty() {
        return Err("the search needs at least one word".to_owned());
    }
    let base = confined_dir(root, dir)?;
    let mut files = Vec::new();
    collect_files(&base, &base, &mut files);
    files.sort();
    let mut hits: Vec<(usize, String)> = Vec::new();
    for path in files {
        let Ok(text) = crate::user_file::read_text(&path) else {
            continue;
        };
        let shown = path
            .strip_prefix(&base)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let score = terms.iter().filter(|t| lower.contains(t.as_str())).count();
            if score > 0 {
                hits.push((
                    score,
                    format!(
                        "{shown}:{}: {}",
                        number + 1,
                        clip(line.trim(), SEARCH_LINE_CHARS)
                    ),
                ));
            }
        }
    }
    if hits.is_empty() {
        return Ok(format!("no lines in {dir}/ match \"{}\"", query.trim()));
    }
    // A stable sort keeps file and line order among equal scores.
    hits.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    Ok(hits
        .into_iter()
        .take(SEARCH_MAX_RESULTS)
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The real path of `root/dir`, refused when it leads outside the project.
fn confined_dir(root: &Path, dir: &str) -> Result<PathBuf, String> {
    let name = crate::prompt::normalize_name(dir).map_err(|e| format!("search folder: {e}"))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("cannot resolve the project folder: {e}"))?;
    let real = root
        .join(&name)
        .canonicalize()
        .map_err(|_| format!("the search folder `{name}` does not exist"))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "the search folder `{name}` leads outside the project"
        ));
    }
    if !real.is_dir() {
        return Err(format!("the search folder `{name}` is not a folder"));
    }
    Ok(real)
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= SEARCH_MAX_FILES {
            return;
        }
        // Resolve links and keep only what stays inside the search folder.
        let Ok(real) = entry.path().canonicalize() else {
            continue;
        };
        if !real.starts_with(base) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&real) else {
            continue;
        };
        if meta.is_dir() {
            // A link back up would loop; the prefix check above admits only descendants, and a
            // descendant reached twice through a link is merely searched twice.
            if real != *dir && real.starts_with(dir) {
                collect_files(base, &real, out);
            }
        } else if meta.is_file() && meta.len() <= SEARCH_MAX_FILE_BYTES {
            out.push(real);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command tools

/// Runs an allow-listed command tool: its fixed program and arguments, then `input` as one more
/// argument. No shell is involved, so the input cannot start other commands; the environment
/// is cleared but for PATH, HOME and LANG, so API keys are not handed to the tool.
pub fn run_command(tool: &RawTool, input: &str, cwd: &Path) -> Result<String, String> {
    let Some((program, fixed)) = tool.command.split_first() else {
        return Err("the tool has no command".to_owned());
    };
    let mut command = Command::new(program);
    command
        .args(fixed)
        .arg(input)
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for keep in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(keep) {
            command.env(keep, value);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let stdout = child.stdout.take().map(capped_reader);
    let stderr = child.stderr.take().map(capped_reader);
    let timeout = Duration::from_secs_f64(
        tool.timeout
            .filter(|t| *t > 0.0 && t.is_finite())
            .unwrap_or(COMMAND_DEFAULT_TIMEOUT),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{program}` did not finish within {} s and was stopped",
                    timeout.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for `{program}`: {e}")),
        }
    };
    let join = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
        handle
            .and_then(|h| h.join().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let (out, err) = (join(stdout), join(stderr));
    if status.success() {
        Ok(clip(out.trim(), MAX_OBSERVATION_CHARS))
    } else {
        Err(format!(
            "`{program}` failed ({status}): {}",
            clip(err.trim(), MAX_OBSERVATION_CHARS / 2)
        ))
    }
}

/// Reads a pipe to its end on a thread (so a chatty child cannot block on a full pipe) and keeps
/// the first bytes only.
fn capped_reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = COMMAND_OUTPUT_BYTES.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    })
}

/// The first `max` characters of `text`, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc(text: &str) -> String {
        match calculate(text) {
            Ok(v) => format_number(v),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn calculator_precedence_and_functions() {
        assert_eq!(calc("(12 * 7) + 81"), "165");
        assert_eq!(calc("48 * 36 * 12 - 5000"), "15736");
        assert_eq!(calc("17.5% * 2480"), "434");
        assert_eq!(calc("0.175 * 2480"), "434");
        assert_eq!(calc("2 ^ 3 ^ 2"), "512");
        assert_eq!(calc("2 ** 10"), "1024");
        assert_eq!(calc("-2^2"), "-4");
        assert_eq!(calc("10 / 4"), "2.5");
        assert_eq!(calc("sqrt(16) + max(1, 7, 3) - min(2, 5)"), "9");
        assert_eq!(calc("round(2.5) + floor(1.9) + abs(-3)"), "7");
        assert_eq!(calc("1e3 + 2.5E-1"), "1000.25");
        assert_eq!(calc("7 × 6 ÷ 2"), "21");
        assert_eq!(calc("1/3"), "0.3333333333");
    }

    #[test]
    fn calculator_errors_are_explained() {
        assert_eq!(calc("1 / 0"), "error: division by zero");
        assert_eq!(calc("2 +"), "error: the expression ends too early");
        assert_eq!(calc("(1 + 2"), "error: missing `)`");
        assert_eq!(calc("rm -rf /"), "error: unknown name `rm`");
        assert_eq!(calc("1; 2"), "error: unexpected character `;`");
        assert_eq!(calc(""), "error: empty expression");
        assert_eq!(calc("sqrt(-1)"), "error: square root of a negative number");
        // Hostile nesting is refused, not a stack overflow.
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(calc(&deep).contains("expression longer than"));
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(calc(&deep).contains("nested deeper"), "{}", calc(&deep));
        assert!(calc(&"-".repeat(500)).contains("nested deeper"));
    }

    #[test]
    fn dates_from_epoch_seconds() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(951_782_400), "2000-02-29");
        assert_eq!(iso_date(1_709_251_199), "2024-02-29");
        assert_eq!(iso_date(-86_400), "1969-12-31");
        assert_eq!(today().len(), 10);
    }

    #[test]
    fn search_is_confined_to_its_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/sub")).unwrap_or_default();
        std::fs::write(
            root.join("data/policy.txt"),
            "Refunds within 30 days.\nShipping is free.\n",
        )
        .unwrap_or_default();
        std::fs::write(
            root.join("data/sub/faq.md"),
            "The refund policy covers gifts.\n",
        )
        .unwrap_or_default();
        std::fs::write(root.join("secret.txt"), "refund password hunter2\n").unwrap_or_default();
        let found = search(root, "data", "refund policy").unwrap_or_else(|e| e);
        assert_eq!(
            found,
            "sub/faq.md:1: The refund policy covers gifts.\npolicy.txt:1: Refunds within 30 days."
        );
        assert!(search(root, "../", "xy").unwrap_err().contains("outside"));
        assert!(search(root, "/etc", "xy").unwrap_err().contains("absolute"));
        assert!(
            search(root, "nope", "xy")
                .unwrap_err()
                .contains("does not exist")
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("secret.txt"), root.join("data/link.txt"))
                .unwrap_or_default();
            let found = search(root, "data", "password").unwrap_or_else(|e| e);
            assert!(!found.contains("hunter2"), "{found}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn commands_run_without_a_shell_with_a_timeout() {
        let tool = |command: &[&str], timeout: Option<f64>| RawTool {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            description: String::new(),
            timeout,
        };
        let cwd = std::env::temp_dir();
        // The input is one argument: shell syntax in it is plain text.
        let echoed = run_command(&tool(&["echo"], None), "$(id); rm -rf /", &cwd);
        assert_eq!(echoed.as_deref(), Ok("$(id); rm -rf /"));
        let slow = run_command(&tool(&["sleep"], Some(0.2)), "5", &cwd);
        assert!(slow.unwrap_err().contains("did not finish within 0.2 s"));
        let missing = run_command(&tool(&["/no/such/program"], None), "", &cwd);
        assert!(missing.unwrap_err().starts_with("cannot start"));
    }
}
