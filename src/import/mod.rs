//! Importing other tools' projects into promptdeck's layout. PURE converters; the CLI writes
//! their output.

pub mod promptfoo;
