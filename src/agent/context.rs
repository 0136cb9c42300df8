//! Keeping the conversation inside the model's context window, loudly.
//!
//! When the conversation grows too long, the oldest tool outputs are replaced by a short note (newest
//! kept), and the caller reports how many. If even that is not enough, it is an error: the prompt is
//! never silently cut by the backend.

use crate::model::{Message, Role};

/// Tokens kept free for the model's reply.
pub const REPLY_RESERVE: usize = 1024;

const ELIDED: &str =
    "[output elided to fit the context window; call the tool again if you need it]";

/// A conservative estimate: about three characters per token for code, plus per-message overhead.
pub fn estimate_tokens(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| {
            let calls: usize = m
                .tool_calls
                .iter()
                .map(|c| c.arguments.to_string().len() + c.name.len())
                .sum();
            (m.content.len() + calls) / 3 + 8
        })
        .sum()
}

/// Elide old tool outputs until the conversation fits `window`. Returns how many were elided, or an
/// error when the conversation cannot fit even with every old output elided.
///
/// Eliding rewrites the middle of the conversation, which costs the backend its prefix cache, so once
/// it has to happen it goes down to three quarters of the budget: the next turns then append again
/// instead of eliding one more output each time.
pub fn fit(messages: &mut [Message], window: usize) -> Result<usize, String> {
    let budget = window.saturating_sub(REPLY_RESERVE);
    if estimate_tokens(messages) <= budget {
        return Ok(0);
    }
    let target = budget / 4 * 3;
    let mut elided = 0;
    // The last two messages are the newest exchange; they stay whole.
    let protected = messages.len().saturating_sub(2);
    for i in 0..protected {
        if estimate_tokens(messages) <= target {
            return Ok(elided);
        }
        let m = &mut messages[i];
        if matches!(m.role, Role::Tool | Role::User)
            && i >= 2
            && m.content != ELIDED
            && m.content.len() > ELIDED.len()
        {
            m.content = ELIDED.to_string();
            elided += 1;
        }
    }
    let needed = estimate_tokens(messages);
    if needed <= budget {
        Ok(elided)
    } else {
        Err(format!(
            "the conversation needs about {needed} tokens even with old tool outputs elided, more than the model's \
             context of {window} tokens minus {REPLY_RESERVE} for the reply; shorten the task or use a model with a longer context"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elides_oldest_outputs_first_and_refuses_the_impossible() {
        let big = "x".repeat(3000);
        let mut messages = vec![Message::system("sys"), Message::user("task")];
        for _ in 0..4 {
            messages.push(Message::assistant("", vec![]));
            messages.push(Message::user(big.clone()));
        }
        assert_eq!(fit(&mut messages, REPLY_RESERVE + 5000).unwrap(), 0);
        let elided = fit(&mut messages, REPLY_RESERVE + 3000).unwrap();
        assert_eq!(
            elided, 2,
            "down to three quarters of the budget, not just under it"
        );
        assert_eq!(messages[3].content, ELIDED);
        assert_eq!(messages[5].content, ELIDED);
        assert_eq!(messages[7].content, big);
        assert_eq!(messages[9].content, big, "the newest output is kept");
        let mut huge = vec![Message::system("s"), Message::user("x".repeat(100_000))];
        assert!(fit(&mut huge, 4096).unwrap_err().contains("context"));
    }
}
