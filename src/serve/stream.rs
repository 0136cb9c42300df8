//! A streamed reply relayed to its client as server-sent events, piece by piece as the model makes
//! them, in the shape of the endpoint asked: OpenAI's chat or completion chunks (ending in
//! `data: [DONE]`), or llama.cpp's `/infill` events (`content`, `stop`).
//!
//! The relay writes the response itself (chunked transfer encoding, flushed after every event) on
//! the connection tiny_http hands over. A write that fails means the client has gone: the relay
//! raises the job's cancel flag, the model's sink sees it and the generation stops, and the relay
//! still waits for the final turn so that what was generated is counted against the user.
//! Here is only shaping and relaying: it never logs or keeps the text it passes on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use serde_json::{json, Value};

use super::users::{now_secs, Counts};
use super::Answer;
use crate::model::AssistantTurn;

/// Which endpoint's event shape a stream takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `/v1/chat/completions`: `chat.completion.chunk` deltas.
    Chat,
    /// `/v1/completions`: `text_completion` chunks.
    Completion,
    /// llama.cpp's `/infill`: `{"content": …, "stop": false}` events, the last one `stop: true`.
    Infill,
}

/// A stream waiting for its first answer.
pub(super) struct Stream {
    pub answers: mpsc::Receiver<Answer>,
    pub cancel: Arc<AtomicBool>,
    pub shape: Shape,
    pub id: String,
    pub model: String,
    /// Strings that end the text (not sent themselves).
    pub stops: Vec<String>,
    /// The request's token limit, to tell `length` from `stop`.
    pub max_tokens: usize,
}

/// The text before the first of `stops` in `text`, as a byte length; `None` when none occurs.
pub(super) fn stop_at(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// Text that may be sent so far: everything except a tail that could still turn out to be the start
/// of a stop string.
struct StopCut {
    stops: Vec<String>,
    text: String,
    sent: usize,
    stopped: bool,
}

impl StopCut {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            text: String::new(),
            sent: 0,
            stopped: false,
        }
    }

    /// Add a piece; the text now safe to send (empty when nothing is). After a stop string nothing
    /// more is taken.
    fn push(&mut self, piece: &str) -> &str {
        if self.stopped {
            return "";
        }
        self.text.push_str(piece);
        let end = match stop_at(&self.text, &self.stops) {
            Some(at) => {
                self.stopped = true;
                at
            }
            None => {
                let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
                let mut safe = self.text.len().saturating_sub(longest.saturating_sub(1));
                while !self.text.is_char_boundary(safe) {
                    safe -= 1;
                }
                safe.max(self.sent)
            }
        };
        let from = std::mem::replace(&mut self.sent, end);
        &self.text[from..end]
    }

    /// What is left to send when the model has finished.
    fn rest(&mut self) -> &str {
        if self.stopped {
            return "";
        }
        let from = std::mem::replace(&mut self.sent, self.text.len());
        &self.text[from..]
    }
}

impl Stream {
    /// Relay the stream to `out` (the raw connection): the response head (status 200), an event per
    /// piece, the closing event(s). Fills `counts` from the final turn.
    pub(super) fn relay(self, first: Answer, out: &mut dyn Write, counts: &mut Counts) {
        let mut cut = StopCut::new(self.stops.clone());
        let mut gone = write_head(out).is_err();
        if !gone && self.shape == Shape::Chat {
            gone = self
                .send(
                    out,
                    &self.chat_chunk(json!({"role": "assistant", "content": ""}), None),
                )
                .is_err();
        }
        let mut next = Some(first);
        loop {
            let answer = match next.take() {
                Some(answer) => answer,
                None => match self.answers.recv() {
                    Ok(answer) => answer,
                    // The model thread ended without a final turn.
                    Err(_) => break,
                },
            };
            match answer {
                Answer::Text(piece) => {
                    if gone {
                        continue;
                    }
                    let safe = cut.push(&piece).to_string();
                    if !safe.is_empty() && self.send(out, &self.piece(&safe)).is_err() {
                        gone = true;
                    }
                    // A stop string reached, or the client gone: no more tokens are wanted.
                    if gone || cut.stopped {
                        self.cancel.store(true, Ordering::Relaxed);
                    }
                }
                Answer::Done(result) => {
                    match result {
                        Ok(turn) => {
                            counts.prompt_tokens = turn.usage.prompt_tokens as u64;
                            counts.completion_tokens = turn.usage.completion_tokens as u64;
                            counts.model_ms = turn.usage.elapsed_ms;
                            if !gone {
                                let rest = cut.rest().to_string();
                                let finish = self.finish_reason(&turn, cut.stopped);
                                let _ = self.finish(out, &rest, &turn, finish);
                            }
                        }
                        Err(e) if !gone => {
                            let error = json!({"error": {"message": e.to_string(), "type": "server_error", "code": 500}});
                            let _ = self.send(out, &error).and_then(|()| end(out));
                        }
                        Err(_) => {}
                    }
                    break;
                }
            }
        }
    }

    fn finish_reason(&self, turn: &AssistantTurn, stopped: bool) -> &'static str {
        if !stopped && turn.usage.completion_tokens >= self.max_tokens {
            "length"
        } else {
            "stop"
        }
    }

    /// The last piece of text, the closing event with the usage, and the end of the stream.
    fn finish(
        &self,
        out: &mut dyn Write,
        rest: &str,
        turn: &AssistantTurn,
        finish: &str,
    ) -> std::io::Result<()> {
        if !rest.is_empty() {
            self.send(out, &self.piece(rest))?;
        }
        let usage = &turn.usage;
        let totals = json!({
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        });
        let last = match self.shape {
            Shape::Chat => {
                let mut chunk = self.chat_chunk(json!({}), Some(finish));
                chunk["usage"] = totals;
                chunk
            }
            Shape::Completion => {
                let mut chunk = self.completion_chunk("", Some(finish));
                chunk["usage"] = totals;
                chunk
            }
            Shape::Infill => json!({
                "content": "",
                "stop": true,
                "model": self.model,
                "tokens_predicted": usage.completion_tokens,
                "tokens_evaluated": usage.prompt_tokens,
                "timings": {"prompt_ms": usage.ttft_ms, "predicted_ms": usage.elapsed_ms.saturating_sub(usage.ttft_ms)},
            }),
        };
        self.send(out, &last)?;
        if self.shape != Shape::Infill {
            write_chunk(out, b"data: [DONE]\n\n")?;
        }
        end(out)
    }

    fn piece(&self, text: &str) -> Value {
        match self.shape {
            Shape::Chat => self.chat_chunk(json!({"content": text}), None),
            Shape::Completion => self.completion_chunk(text, None),
            Shape::Infill => json!({"content": text, "stop": false}),
        }
    }

    fn chat_chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": now_secs(), "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    fn completion_chunk(&self, text: &str, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "text_completion", "created": now_secs(), "model": self.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn send(&self, out: &mut dyn Write, event: &Value) -> std::io::Result<()> {
        write_chunk(out, format!("data: {event}\n\n").as_bytes())
    }
}

/// The response head: an event stream in chunked transfer encoding, the connection closed after.
fn write_head(out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    out.flush()
}

/// One chunk of the chunked encoding, flushed so that the client sees it now.
fn write_chunk(out: &mut dyn Write, data: &[u8]) -> std::io::Result<()> {
    write!(out, "{:x}\r\n", data.len())?;
    out.write_all(data)?;
    out.write_all(b"\r\n")?;
    out.flush()
}

/// The last, empty chunk.
fn end(out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_all(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut cut = StopCut::new(stops.iter().map(|s| s.to_string()).collect());
        let mut sent = String::new();
        for piece in pieces {
            sent.push_str(cut.push(piece));
        }
        sent.push_str(cut.rest());
        (sent, cut.stopped)
    }

    #[test]
    fn a_stop_string_split_across_pieces_is_never_sent() {
        assert_eq!(
            cut_all(&["\nEND"], &["let x", " = 1;\nE", "N", "D more"]),
            ("let x = 1;".into(), true)
        );
        assert_eq!(
            cut_all(&["\n"], &["a", "b\nc"]),
            ("ab".into(), true),
            "a one-line completion ends at its line"
        );
        assert_eq!(cut_all(&["\nEND"], &["x\nE", "ND"]), ("x".into(), true));
    }

    #[test]
    fn text_that_only_looks_like_a_stop_start_is_sent_whole() {
        assert_eq!(
            cut_all(&["\nEND"], &["a\nE", "ndless"]),
            ("a\nEndless".into(), false)
        );
        assert_eq!(cut_all(&[], &["é", "ü"]), ("éü".into(), false));
        // A multi-byte character at the held-back boundary.
        assert_eq!(cut_all(&["xyz"], &["aé", "b"]), ("aéb".into(), false));
    }
}
