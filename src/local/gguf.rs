//! GGUF file access: opens a model file, validates it before any weight is read, and
//! extracts what the rest of the engine needs (architecture, context length, chat template,
//! tokenizer vocabulary, quantization). Owns the mapping from GGUF metadata keys to typed data.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};

/// Errors raised while opening or interpreting a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot open model file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid GGUF file (corrupt or truncated header): {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path}: file is truncated: tensor `{tensor}` ends at byte {needed} but the file has {size} bytes"
    )]
    Truncated {
        path: PathBuf,
        tensor: String,
        needed: u64,
        size: u64,
    },
    #[error("{path}: unsupported model architecture `{architecture}` (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        architecture: String,
        supported: String,
    },
    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata key `{key}` has an unexpected type (expected {expected})")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
}

/// Model families the engine can run. Dispatch on this, never on the raw string, so adding a
/// family is one variant plus one arm in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma3,
}

impl Architecture {
    pub const SUPPORTED: &'static [&'static str] = &["llama", "qwen2", "qwen3", "phi3", "gemma3"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            "phi3" => Some(Self::Phi3),
            "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Phi3 => "phi3",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// A user-facing description of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub file_size: u64,
    pub architecture: Architecture,
    pub name: Option<String>,
    /// Dominant weight type by bytes, e.g. `Q4_1`.
    pub quantization: String,
    pub parameter_count: u64,
    /// Context length declared by the file (`{arch}.context_length`).
    pub context_length: usize,
    pub has_chat_template: bool,
}

/// Everything a tokenizer is built from, copied out of the metadata.
#[derive(Debug, Clone, Default)]
pub struct TokenizerData {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece-style).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer profile; absent on SentencePiece models.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    pub scores: Vec<f32>,
    pub token_types: Vec<i32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unknown_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece models).
    pub add_space_prefix: Option<bool>,
}

/// An opened, validated GGUF file: header parsed, tensor extents checked against the file size.
#[derive(Debug)]
pub struct GgufModel {
    pub info: ModelInfo,
    pub content: Content,
    pub chat_template: Option<String>,
}

impl GgufModel {
    /// Reads the header and metadata (not the weights) and checks that every tensor lies within
    /// the file, so a truncated download is reported here rather than halfway through loading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err)?;
        let mut reader = BufReader::new(file);
        let file_size = reader.seek(SeekFrom::End(0)).map_err(io_err)?;
        reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let corrupt = |message: String| GgufError::Corrupt {
            path: path.clone(),
            message,
        };
        // candle divides by `general.alignment` without checking it; a zero there would panic
        // inside `Content::read`, so it is looked for first.
        if let Some(message) = zero_alignment(&mut reader, file_size) {
            return Err(corrupt(message));
        }
        reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let content = Content::read(&mut reader).map_err(|e| corrupt(e.to_string()))?;

        let mut parameter_count = 0u64;
        let mut bytes_by_type: HashMap<GgmlDType, u64> = HashMap::new();
        for (name, ti) in &content.tensor_infos {
            // Dimensions come from the file: their product (and the byte size) can overflow,
            // which `Shape::elem_count` would not notice in a release build (a wrapped size
            // passes the bounds check below) and panics on in a debug one.
            let overflow = || corrupt(format!("tensor `{name}` has an impossibly large shape"));
            let elems = ti
                .shape
                .dims()
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(overflow)?;
            let block = ti.ggml_dtype.block_size() as u64;
            let bytes = elems
                .div_ceil(block.max(1))
                .checked_mul(ti.ggml_dtype.type_size() as u64)
                .ok_or_else(overflow)?;
            let needed = content
                .tensor_data_offset
                .saturating_add(ti.offset)
                .saturating_add(bytes);
            if needed > file_size {
                return Err(GgufError::Truncated {
                    path,
                    tensor: name.clone(),
                    needed,
                    size: file_size,
                });
            }
            parameter_count = parameter_count.saturating_add(elems);
            // Norms and biases are F32 in every quantized file; only matrices say what the
            // quantization is.
            if ti.shape.rank() >= 2 {
                *bytes_by_type.entry(ti.ggml_dtype).or_default() += bytes;
            }
        }
        let md = Metadata {
            path: &path,
            map: &content.metadata,
        };
        // The file's own label (a mix such as Q4_K_M keeps some matrices in other types),
        // else the type holding the most matrix bytes.
        let quantization = md
            .opt_u64("general.file_type")
            .ok()
            .flatten()
            .and_then(file_type_name)
            .map(str::to_string)
            .or_else(|| {
                bytes_by_type
                    .iter()
                    .max_by_key(|(_, b)| **b)
                    .map(|(t, _)| format!("{t:?}"))
            })
            .unwrap_or_else(|| "none".to_string());

        let arch_name = md.string("general.architecture")?;
        let architecture =
            Architecture::parse(&arch_name).ok_or_else(|| GgufError::UnsupportedArchitecture {
                path: path.clone(),
                architecture: arch_name.clone(),
                supported: Architecture::SUPPORTED.join(", "),
            })?;
        let context_length = md.u64(&format!("{arch_name}.context_length"))? as usize;
        let chat_template = md.opt_string("tokenizer.chat_template")?;
        let name = md.opt_string("general.name")?;
        let info = ModelInfo {
            path: path.clone(),
            file_size,
            architecture,
            name,
            quantization,
            parameter_count,
            context_length,
            has_chat_template: chat_template.is_some(),
        };
        Ok(Self {
            info,
            content,
            chat_template,
        })
    }

    pub fn metadata(&self) -> Metadata<'_> {
        Metadata {
            path: &self.info.path,
            map: &self.content.metadata,
        }
    }

    /// Copies the tokenizer section of the metadata.
    pub fn tokenizer_data(&self) -> Result<TokenizerData, GgufError> {
        let md = self.metadata();
        Ok(TokenizerData {
            model: md.string("tokenizer.ggml.model")?,
            pre: md.opt_string("tokenizer.ggml.pre")?,
            tokens: md.string_array("tokenizer.ggml.tokens")?,
            merges: md
                .opt_string_array("tokenizer.ggml.merges")?
                .unwrap_or_default(),
            scores: md
                .opt_f32_array("tokenizer.ggml.scores")?
                .unwrap_or_default(),
            token_types: md
                .opt_i32_array("tokenizer.ggml.token_type")?
                .unwrap_or_default(),
            bos_id: md.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_id: md.opt_u32("tokenizer.ggml.eos_token_id")?,
            unknown_id: md.opt_u32("tokenizer.ggml.unknown_token_id")?,
            add_bos: md.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: md.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: md.opt_bool("tokenizer.ggml.add_space_prefix")?,
        })
    }
}

/// Walks the header's metadata and reports a `general.alignment` of zero. Anything else that is
/// wrong is left to candle's reader, which reports it as corrupt; this walk only gives up
/// (`None`) where the file does not parse. Values are skipped with `seek_relative`, which keeps
/// the reader's buffer, so a 150,000-token vocabulary costs no extra reads from disk.
fn zero_alignment(reader: &mut BufReader<File>, file_size: u64) -> Option<String> {
    type R = BufReader<File>;
    fn u32_of(r: &mut R) -> Option<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }
    fn u64_of(r: &mut R) -> Option<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).ok()?;
        Some(u64::from_le_bytes(b))
    }
    // Version 1 writes lengths as u32, later versions as u64.
    fn len_of(r: &mut R, v1: bool) -> Option<u64> {
        if v1 {
            u32_of(r).map(u64::from)
        } else {
            u64_of(r)
        }
    }
    /// Skips a value of GGUF type `kind`; returns its value when it is an integer.
    fn skip(r: &mut R, kind: u32, v1: bool, depth: usize, size: u64) -> Option<Option<i128>> {
        let mut integer = |n: usize| -> Option<Option<i128>> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b[..n]).ok()?;
            Some(Some(match kind {
                1 => i128::from(b[0] as i8),
                3 => i128::from(i16::from_le_bytes([b[0], b[1]])),
                5 => i128::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                11 => i128::from(i64::from_le_bytes(b)),
                _ => i128::from(u64::from_le_bytes(b)),
            }))
        };
        match kind {
            0 | 1 => integer(1),
            2 | 3 => integer(2),
            4 | 5 => integer(4),
            10 | 11 => integer(8),
            6 => r.seek_relative(4).ok().map(|_| None),
            7 => r.seek_relative(1).ok().map(|_| None),
            12 => r.seek_relative(8).ok().map(|_| None),
            8 => {
                let len = len_of(r, v1)?;
                (len <= size).then_some(())?;
                r.seek_relative(i64::try_from(len).ok()?).ok().map(|_| None)
            }
            9 if depth < 4 => {
                let item = u32_of(r)?;
                let len = len_of(r, v1)?;
                // Every item takes at least a byte: more items than the file has bytes is
                // corrupt, and bounds this loop.
                (len <= size).then_some(())?;
                for _ in 0..len {
                    skip(r, item, v1, depth + 1, size)?;
                }
                Some(None)
            }
            _ => None,
        }
    }
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).ok()?;
    (&magic == b"GGUF").then_some(())?;
    let v1 = u32_of(reader)? == 1;
    let _tensors = len_of(reader, v1)?;
    let entries = len_of(reader, v1)?;
    for _ in 0..entries.min(file_size) {
        let key_len = len_of(reader, v1)?;
        // Real keys are short; a long one is left to candle to judge.
        (key_len <= 1 << 16).then_some(())?;
        let mut key = vec![0u8; usize::try_from(key_len).ok()?];
        reader.read_exact(&mut key).ok()?;
        let kind = u32_of(reader)?;
        let value = skip(reader, kind, v1, 0, file_size)?;
        if key == b"general.alignment" && value == Some(0) {
            return Some("metadata key `general.alignment` is 0".to_owned());
        }
        // Past the end: the walk read garbage; candle reports it.
        (reader.stream_position().ok()? <= file_size).then_some(())?;
    }
    None
}

/// Typed, error-reporting view of the metadata map.
#[derive(Clone, Copy)]
pub struct Metadata<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            path: self.path.to_path_buf(),
            key: key.to_string(),
        }
    }

    fn wrong(&self, key: &str, expected: &'static str) -> GgufError {
        GgufError::WrongType {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            expected,
        }
    }

    pub fn string(&self, key: &str) -> Result<String, GgufError> {
        self.opt_string(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<String>, GgufError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(key, "string")),
        }
    }

    /// Any unsigned or non-negative signed integer, since writers disagree on widths.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        let v = match self.map.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: Option<u64> = match v {
            Value::U8(n) => Some(u64::from(*n)),
            Value::U16(n) => Some(u64::from(*n)),
            Value::U32(n) => Some(u64::from(*n)),
            Value::U64(n) => Some(*n),
            Value::I8(n) => u64::try_from(*n).ok(),
            Value::I16(n) => u64::try_from(*n).ok(),
            Value::I32(n) => u64::try_from(*n).ok(),
            Value::I64(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        n.map(Some)
            .ok_or_else(|| self.wrong(key, "non-negative integer"))
    }

    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.opt_u64(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.wrong(key, "32-bit integer")),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(key, "bool")),
        }
    }

    fn opt_array(&self, key: &str) -> Result<Option<&Vec<Value>>, GgufError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.wrong(key, "array")),
        }
    }

    pub fn string_array(&self, key: &str) -> Result<Vec<String>, GgufError> {
        self.opt_string_array(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_string_array(&self, key: &str) -> Result<Option<Vec<String>>, GgufError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(self.wrong(key, "array of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                _ => Err(self.wrong(key, "array of floats")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x),
                Value::U32(x) => i32::try_from(*x).map_err(|_| self.wrong(key, "i32")),
                Value::I8(x) => Ok(i32::from(*x)),
                Value::U8(x) => Ok(i32::from(*x)),
                _ => Err(self.wrong(key, "array of integers")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// llama.cpp's name for a `general.file_type` value (`enum llama_ftype`).
fn file_type_name(file_type: u64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}
