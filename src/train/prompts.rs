//! Class prompts: the dataset's template filled with each class name, tokenised once.

use anyhow::Result;
use tch::Tensor;

use crate::clip::tokenizer::Tokenizer;
use crate::zero_shot::prompt;

/// Token ids [classes, context] for `template` filled with each class name.
pub fn class_prompt_ids(template: &str, classnames: &[String], context_length: i64) -> Result<Tensor> {
    let tokenizer = Tokenizer::new();
    let mut ids = Vec::with_capacity(classnames.len() * context_length as usize);
    for class in classnames {
        ids.extend(tokenizer.tokenize(&prompt(template, class), context_length as usize, false)?);
    }
    Ok(Tensor::from_slice(&ids).view([classnames.len() as i64, context_length]))
}
