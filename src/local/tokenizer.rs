//! Text <-> token ids for GGUF models, built only from the file's own vocabulary: byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`) with an explicit pre-tokenizer table keyed by
//! `tokenizer.ggml.pre`, and SentencePiece-style BPE (`"llama"`). Special tokens are matched
//! literally in the input. Unknown profiles are refused rather than guessed, because a wrong
//! guess silently changes every prompt.

use std::collections::HashMap;

use regex::Regex;

use super::gguf::TokenizerData;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "unsupported tokenizer pre-tokenizer profile `{0}` (supported: smollm, gpt2, llama-bpe, qwen2)"
    )]
    UnsupportedPreTokenizer(String),
    #[error("byte-level BPE tokenizer without `tokenizer.ggml.pre`; refusing to guess a profile")]
    MissingPreTokenizer,
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, llama)")]
    UnsupportedModel(String),
    #[error("tokenizer metadata is inconsistent: {0}")]
    Inconsistent(String),
    #[error("token id {0} is outside the vocabulary")]
    UnknownId(u32),
    #[error("text contains bytes that no token covers")]
    Unencodable,
}

/// GGUF token types (llama.cpp `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i32(v: i32) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Pre-tokenizer profiles, as llama.cpp defines them for each `tokenizer.ggml.pre` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// Digits split one by one, then the GPT-2 pattern (no prefix space).
    Smollm,
    Gpt2,
    /// Llama 3: case-insensitive contractions, digits in groups of up to three.
    LlamaBpe,
    /// Like Llama 3 but digits one by one.
    Qwen2,
}

impl PreTokenizer {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "smollm" => Some(Self::Smollm),
            "gpt2" | "gpt-2" => Some(Self::Gpt2),
            "llama-bpe" | "llama3" => Some(Self::LlamaBpe),
            "qwen2" => Some(Self::Qwen2),
            _ => None,
        }
    }

    /// The profile's regexes, applied in sequence. In each, the trailing `\s+(?!\S)|\s+` of the
    /// original pattern is written as the capture group `(\s+)` because the regex crate has no
    /// look-ahead; `split_with` restores the look-ahead's effect.
    fn patterns(self) -> &'static [&'static str] {
        const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|(\s+)";
        match self {
            Self::Smollm => &[r"\p{N}", GPT2],
            Self::Gpt2 => &[GPT2],
            Self::LlamaBpe => &[
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|(\s+)",
            ],
            Self::Qwen2 => &[
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|(\s+)",
            ],
        }
    }

    /// Llama 3 looks a whole word up in the vocabulary before merging.
    fn ignore_merges(self) -> bool {
        matches!(self, Self::LlamaBpe)
    }
}

/// Splits `text` like a backtracking engine would with `\s+(?!\S)` in place of group 1: a
/// whitespace run followed by a non-space gives up its last character to the next piece.
/// Unmatched gaps are kept as pieces, as llama.cpp does.
fn split_with<'t>(re: &Regex, text: &'t str, out: &mut Vec<&'t str>) {
    let mut pos = 0;
    let mut gap_start = 0;
    while pos < text.len() {
        let Some(caps) = re.captures_at(text, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else {
            break;
        };
        let mut end = m.end();
        if caps.get(1).is_some() && end < text.len() {
            let run = m.as_str();
            if let Some((last, _)) = run.char_indices().next_back()
                && last > 0
            {
                end = m.start() + last;
            }
        }
        if m.start() > gap_start {
            out.push(&text[gap_start..m.start()]);
        }
        if end > m.start() {
            out.push(&text[m.start()..end]);
            pos = end;
        } else {
            // An empty match cannot happen with these patterns, but stepping one char keeps a
            // future pattern from looping forever.
            pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
        }
        gap_start = pos;
    }
    if gap_start < text.len() {
        out.push(&text[gap_start..]);
    }
}

/// GPT-2's reversible byte -> printable char table.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            u32::from(b)
        } else {
            n += 1;
            255 + n
        };
        // Code points below 0x200 are all valid chars.
        table[b as usize] = char::from_u32(cp).unwrap_or('\0');
    }
    table
}

#[derive(Debug, Clone)]
enum Model {
    Bpe {
        pre: PreTokenizer,
        splitters: Vec<Regex>,
        /// (left id, right id) -> (rank, merged id)
        merges: HashMap<(u32, u32), (u32, u32)>,
        byte_encoder: Box<[char; 256]>,
        byte_decoder: HashMap<char, u8>,
    },
    Spm {
        scores: Vec<f32>,
        /// `<0xAB>` byte-fallback tokens.
        byte_tokens: Box<[Option<u32>; 256]>,
        add_space_prefix: bool,
    },
}

/// A tokenizer for one GGUF vocabulary.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    model: Model,
    tokens: Vec<String>,
    token_types: Vec<TokenType>,
    token_to_id: HashMap<String, u32>,
    /// Literal-match tokens, longest first (llama.cpp's order of partitioning).
    specials: Vec<(String, u32)>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unknown_id: Option<u32>,
    add_bos: bool,
}

impl Tokenizer {
    pub fn from_gguf(data: &TokenizerData) -> Result<Self, TokenizerError> {
        let n = data.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Inconsistent("empty vocabulary".into()));
        }
        let token_types: Vec<TokenType> = if data.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else if data.token_types.len() == n {
            data.token_types
                .iter()
                .map(|t| TokenType::from_i32(*t))
                .collect()
        } else {
            return Err(TokenizerError::Inconsistent(format!(
                "{} tokens but {} token types",
                n,
                data.token_types.len()
            )));
        };
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in data.tokens.iter().enumerate() {
            // First occurrence wins, as in llama.cpp; ids fit u32 since GGUF caps arrays.
            token_to_id.entry(t.clone()).or_insert(i as u32);
        }
        for id in [data.bos_id, data.eos_id, data.unknown_id]
            .into_iter()
            .flatten()
        {
            if id as usize >= n {
                return Err(TokenizerError::Inconsistent(format!(
                    "special token id {id} outside a vocabulary of {n}"
                )));
            }
        }
        let mut specials: Vec<(String, u32)> = data
            .tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                !t.is_empty()
                    && matches!(token_types[*i], TokenType::Control | TokenType::UserDefined)
            })
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let (model, add_bos_default) = match data.model.as_str() {
            "gpt2" => {
                let pre_name = data
                    .pre
                    .as_deref()
                    .ok_or(TokenizerError::MissingPreTokenizer)?;
                let pre = PreTokenizer::from_name(pre_name)
                    .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre_name.into()))?;
                let splitters = pre
                    .patterns()
                    .iter()
                    .map(|p| Regex::new(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TokenizerError::Inconsistent(e.to_string()))?;
                let mut merges = HashMap::with_capacity(data.merges.len());
                for (rank, line) in data.merges.iter().enumerate() {
                    let Some((a, b)) = line.split_once(' ') else {
                        return Err(TokenizerError::Inconsistent(format!(
                            "merge `{line}` is not two tokens"
                        )));
                    };
                    let (Some(&ia), Some(&ib), Some(&im)) = (
                        token_to_id.get(a),
                        token_to_id.get(b),
                        token_to_id.get(&format!("{a}{b}")),
                    ) else {
                        // llama.cpp also skips merges whose parts are not tokens.
                        continue;
                    };
                    merges.entry((ia, ib)).or_insert((rank as u32, im));
                }
                let byte_encoder = Box::new(bytes_to_unicode());
                let byte_decoder = byte_encoder
                    .iter()
                    .enumerate()
                    .map(|(b, c)| (*c, b as u8))
                    .collect();
                (
                    Model::Bpe {
                        pre,
                        splitters,
                        merges,
                        byte_encoder,
                        byte_decoder,
                    },
                    false,
                )
            }
            "llama" => {
                if data.scores.len() != n {
                    return Err(TokenizerError::Inconsistent(format!(
                        "{} tokens but {} scores",
                        n,
                        data.scores.len()
                    )));
                }
                let mut byte_tokens = Box::new([None; 256]);
                for (b, slot) in byte_tokens.iter_mut().enumerate() {
                    *slot = token_to_id.get(&format!("<0x{b:02X}>")).copied();
                }
                (
                    Model::Spm {
                        scores: data.scores.clone(),
                        byte_tokens,
                        add_space_prefix: data.add_space_prefix.unwrap_or(false),
                    },
                    true,
                )
            }
            other => return Err(TokenizerError::UnsupportedModel(other.into())),
        };

        Ok(Self {
            model,
            tokens: data.tokens.clone(),
            token_types,
            token_to_id,
            specials,
            bos_id: data.bos_id,
            eos_id: data.eos_id,
            unknown_id: data.unknown_id,
            add_bos: data.add_bos.unwrap_or(add_bos_default),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether the model expects BOS before a prompt (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&TokenType::Control)
    }

    /// Encodes `text`. With `parse_special`, control and user-defined token texts in the input
    /// (e.g. `<|im_start|>`) become their ids; otherwise they are tokenized as plain text.
    pub fn encode(
        &self,
        text: &str,
        add_bos: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        if add_bos && let Some(bos) = self.bos_id {
            ids.push(bos);
        }
        let fragments = if parse_special {
            self.partition_specials(text)
        } else {
            vec![Fragment::Text(text)]
        };
        // SentencePiece models with a space prefix get it at the start and after each special
        // token, as llama.cpp does.
        let mut after_special = true;
        for fragment in &fragments {
            match fragment {
                Fragment::Special(id) => {
                    ids.push(*id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    self.encode_fragment(t, after_special, &mut ids)?;
                    after_special = false;
                }
            }
        }
        Ok(ids)
    }

    fn partition_specials<'t>(&self, text: &'t str) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for (special, id) in &self.specials {
            if !text.contains(special.as_str()) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                match fragment {
                    Fragment::Text(t) => {
                        let mut rest = t;
                        while let Some(at) = rest.find(special.as_str()) {
                            if at > 0 {
                                next.push(Fragment::Text(&rest[..at]));
                            }
                            next.push(Fragment::Special(*id));
                            rest = &rest[at + special.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Fragment::Text(rest));
                        }
                    }
                    special_fragment => next.push(special_fragment),
                }
            }
            fragments = next;
        }
        fragments
    }

    fn encode_fragment(
        &self,
        text: &str,
        space_prefix: bool,
        ids: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        match &self.model {
            Model::Bpe {
                pre,
                splitters,
                merges,
                byte_encoder,
                ..
            } => {
                let mut pieces = vec![text];
                for re in splitters {
                    let mut next = Vec::with_capacity(pieces.len() * 2);
                    for p in pieces {
                        split_with(re, p, &mut next);
                    }
                    pieces = next;
                }
                for piece in pieces {
                    let mapped: String = piece.bytes().map(|b| byte_encoder[b as usize]).collect();
                    if pre.ignore_merges()
                        && let Some(&id) = self.token_to_id.get(&mapped)
                    {
                        ids.push(id);
                        continue;
                    }
                    let mut symbols = Vec::with_capacity(mapped.len());
                    for c in mapped.chars() {
                        let mut buf = [0u8; 4];
                        let id = self
                            .token_to_id
                            .get(c.encode_utf8(&mut buf) as &str)
                            .copied()
                            .or(self.unknown_id)
                            .ok_or(TokenizerError::Unencodable)?;
                        symbols.push(id);
                    }
                    bpe_merge(&mut symbols, |a, b| merges.get(&(a, b)).copied());
                    ids.extend(symbols);
                }
                Ok(())
            }
            Model::Spm {
                scores,
                byte_tokens,
                add_space_prefix,
            } => {
                let mut s = String::with_capacity(text.len() + 3);
                if *add_space_prefix && space_prefix {
                    s.push('\u{2581}');
                }
                s.push_str(&text.replace(' ', "\u{2581}"));
                self.encode_spm(&s, scores, byte_tokens, ids)
            }
        }
    }

    /// SentencePiece BPE as llama.cpp runs it: start from characters and repeatedly merge the
    /// adjacent pair whose concatenation is the highest-scoring token; characters not in the
    /// vocabulary fall back to `<0xAB>` byte tokens.
    fn encode_spm(
        &self,
        text: &str,
        scores: &[f32],
        byte_tokens: &[Option<u32>; 256],
        ids: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        // Byte ranges of `text`, one per character to start with.
        let mut spans: Vec<(usize, usize)> = text
            .char_indices()
            .map(|(i, c)| (i, i + c.len_utf8()))
            .collect();
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..spans.len().saturating_sub(1) {
                let cand = &text[spans[i].0..spans[i + 1].1];
                if let Some(&id) = self.token_to_id.get(cand) {
                    let score = scores.get(id as usize).copied().unwrap_or(f32::MIN);
                    if best.is_none_or(|(s, _, _)| score > s) {
                        best = Some((score, i, id));
                    }
                }
            }
            let Some((_, i, _)) = best else { break };
            spans[i].1 = spans[i + 1].1;
            spans.remove(i + 1);
        }
        for (a, b) in spans {
            let piece = &text[a..b];
            if let Some(&id) = self.token_to_id.get(piece) {
                ids.push(id);
                continue;
            }
            for byte in piece.bytes() {
                let id = byte_tokens[byte as usize]
                    .or(self.unknown_id)
                    .ok_or(TokenizerError::Unencodable)?;
                ids.push(id);
            }
        }
        Ok(())
    }

    /// The bytes a token stands for. Control tokens render as their text, as llama.cpp does when
    /// asked to show special tokens; whether to show them is the caller's choice.
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>, TokenizerError> {
        let text = self
            .tokens
            .get(id as usize)
            .ok_or(TokenizerError::UnknownId(id))?;
        let ty = self.token_types[id as usize];
        if matches!(ty, TokenType::Control | TokenType::UserDefined) {
            return Ok(text.as_bytes().to_vec());
        }
        match &self.model {
            Model::Bpe { byte_decoder, .. } => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match byte_decoder.get(&c) {
                        Some(b) => out.push(*b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                Ok(out)
            }
            Model::Spm { .. } => {
                if ty == TokenType::Byte
                    && let Some(hex) = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'))
                    && let Ok(b) = u8::from_str_radix(hex, 16)
                {
                    return Ok(vec![b]);
                }
                Ok(text.replace('\u{2581}', " ").into_bytes())
            }
        }
    }

    /// Decodes ids to text; invalid UTF-8 (a sequence cut mid-character) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[derive(Debug, Clone, Copy)]
enum Fragment<'t> {
    Text(&'t str),
    Special(u32),
}

/// Classic BPE: merge the lowest-ranked adjacent pair until none is mergeable.
fn bpe_merge(symbols: &mut Vec<u32>, rank: impl Fn(u32, u32) -> Option<(u32, u32)>) {
    loop {
        let mut best: Option<(u32, usize, u32)> = None;
        for i in 0..symbols.len().saturating_sub(1) {
            if let Some((r, merged)) = rank(symbols[i], symbols[i + 1])
                && best.is_none_or(|(br, _, _)| r < br)
            {
                best = Some((r, i, merged));
            }
        }
        let Some((_, i, merged)) = best else { break };
        symbols[i] = merged;
        symbols.remove(i + 1);
    }
}

/// Turns a byte stream into text without ever splitting a UTF-8 character: bytes of an
/// incomplete sequence wait for the next token.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `valid_up_to` marks a UTF-8 boundary, so this slice is valid.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left when the stream ends.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
