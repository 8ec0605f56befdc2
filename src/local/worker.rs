//! The model thread: one dedicated OS thread owns the loaded [`Engine`] and serves requests
//! from a command channel, so inference never runs on the UI thread or an async runtime and the
//! model is loaded once and reused. Results stream back as [`Event`]s.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use super::engine::{
    Engine, EngineConfig, EngineError, FinishReason, GenerateRequest, Timings, Usage,
};

/// What a generation reports, in order: any number of `Token`s, then exactly one `Done` or
/// `Error`.
#[derive(Debug)]
pub enum Event {
    /// A chunk of generated text, as soon as it is final.
    Token(String),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        timings: Timings,
    },
    Error(EngineError),
}

pub enum Command {
    Generate {
        request: GenerateRequest,
        events: Sender<Event>,
        cancel: Arc<AtomicBool>,
    },
}

/// Handle to the model thread. Dropping it lets the thread finish its current request and
/// exit; it never blocks the caller.
#[derive(Debug)]
pub struct LocalWorker {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl LocalWorker {
    /// Starts the thread. The model is loaded on the thread by the first request (its load time
    /// is in that request's timings), so this returns at once; a failed load is reported to the
    /// request and retried by the next one.
    pub fn spawn(
        model_path: impl Into<PathBuf>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let (commands, rx) = mpsc::channel();
        let path = model_path.into();
        let thread = std::thread::Builder::new()
            .name("promptdeck-local-model".into())
            .spawn(move || serve(path, config, rx))
            .map_err(|e| EngineError::ThreadPool(e.to_string()))?;
        Ok(Self {
            commands,
            thread: Some(thread),
        })
    }

    /// Queues a generation; events arrive on the returned receiver. Setting `cancel` stops the
    /// generation before its next token.
    pub fn generate(
        &self,
        request: GenerateRequest,
        cancel: Arc<AtomicBool>,
    ) -> Result<Receiver<Event>, EngineError> {
        let (events, rx) = mpsc::channel();
        self.send(Command::Generate {
            request,
            events,
            cancel,
        })?;
        Ok(rx)
    }

    pub fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .send(command)
            .map_err(|_| EngineError::WorkerGone)
    }

    /// Waits for the thread to finish after closing the command channel; for orderly shutdown.
    pub fn shutdown(mut self) {
        let (dead, _) = mpsc::channel();
        self.commands = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(path: PathBuf, config: EngineConfig, commands: Receiver<Command>) {
    let mut engine: Option<Engine> = None;
    while let Ok(command) = commands.recv() {
        match command {
            Command::Generate {
                request,
                events,
                cancel,
            } => {
                let loaded = match engine.take() {
                    Some(e) => Ok(e),
                    None => Engine::load(&path, &config),
                };
                let mut e = match loaded {
                    Ok(e) => e,
                    Err(err) => {
                        // The requester may have gone away; nothing else to tell.
                        let _ = events.send(Event::Error(err));
                        continue;
                    }
                };
                let result = e.generate(&request, &cancel, |text| {
                    let _ = events.send(Event::Token(text.to_string()));
                });
                let _ = events.send(match result {
                    Ok(c) => Event::Done {
                        finish_reason: c.finish_reason,
                        usage: c.usage,
                        timings: c.timings,
                    },
                    Err(err) => Event::Error(err),
                });
                engine = Some(e);
            }
        }
    }
}
