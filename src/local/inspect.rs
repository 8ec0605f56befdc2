//! A model file's text side without its weights: the tokenizer and chat template that
//! `tokenize` and `render --format model` show, read from the GGUF metadata alone so they answer
//! instantly.

use std::path::Path;

use super::{ChatMessage, ChatTemplate, GgufModel, ModelInfo, Tokenizer};

pub struct Inspector {
    pub info: ModelInfo,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl Inspector {
    pub fn open(path: &Path) -> Result<Self, String> {
        let gguf = GgufModel::open(path).map_err(|e| e.to_string())?;
        let data = gguf.tokenizer_data().map_err(|e| e.to_string())?;
        let tokenizer = Tokenizer::from_gguf(&data).map_err(|e| e.to_string())?;
        let token = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
                .to_owned()
        };
        let template = ChatTemplate::new(
            gguf.chat_template.as_deref(),
            token(tokenizer.bos_id()),
            token(tokenizer.eos_id()),
        )
        .map_err(|e| e.to_string())?;
        Ok(Inspector {
            info: gguf.info,
            tokenizer,
            template,
        })
    }

    /// The exact text the model reads for `messages`, generation prompt included.
    pub fn chat_text(&self, messages: &[crate::prompt::Message]) -> Result<String, String> {
        let messages: Vec<ChatMessage> = messages
            .iter()
            .map(|m| ChatMessage::new(m.role.as_str(), m.content.clone()))
            .collect();
        self.template
            .render(&messages, true)
            .map_err(|e| e.to_string())
    }

    /// Token ids and their pieces (special tokens in the text are honoured, no BOS added).
    pub fn tokenize(&self, text: &str) -> Result<Vec<(u32, String)>, String> {
        let ids = self
            .tokenizer
            .encode(text, false, true)
            .map_err(|e| e.to_string())?;
        ids.into_iter()
            .map(|id| {
                let bytes = self.tokenizer.token_bytes(id).map_err(|e| e.to_string())?;
                Ok((id, String::from_utf8_lossy(&bytes).into_owned()))
            })
            .collect()
    }
}
