//! The checked interpreter.
