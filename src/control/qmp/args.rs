//! A command's arguments, checked as QEMU's QAPI visitor checks them.

use super::error::CommandError;
use serde_json::{Map, Value};

pub(super) fn invalid_type(key: &str, expected: &'static str) -> CommandError {
    CommandError::InvalidType { key: key.to_string(), expected }
}

pub(super) struct Args<'a>(pub(super) &'a Map<String, Value>);

impl Args<'_> {
    pub(super) fn only(&self, allowed: &[&str]) -> Result<(), CommandError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(CommandError::UnexpectedParameter(key.clone())),
            None => Ok(()),
        }
    }

    pub(super) fn str(&self, key: &str) -> Result<Option<&str>, CommandError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid_type(key, "string")),
        }
    }

    pub(super) fn required_str(&self, key: &str) -> Result<&str, CommandError> {
        self.str(key)?.ok_or_else(|| CommandError::MissingParameter(key.to_string()))
    }

    pub(super) fn uint(&self, key: &str) -> Result<Option<u64>, CommandError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid_type(key, "integer")),
        }
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, CommandError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid_type(key, "boolean")),
        }
    }
}

