//! STOMP 1.2 frames: `COMMAND\nheader:value\n...\n\nbody\0`, header values escaped
//! (`\\`, `\n`, `\r`, `\c`), the body delimited by `content-length` when present, else by the
//! first NUL. Heart-beats are bare end-of-lines between frames.

use thiserror::Error;

/// A frame that breaks the protocol.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("STOMP frame header is not UTF-8")]
    NotUtf8,
    #[error("STOMP header line {0:?} has no colon")]
    BadHeader(String),
    #[error("STOMP header has an invalid escape sequence")]
    BadEscape,
    #[error("STOMP content-length {0:?} is not a number")]
    BadLength(String),
    #[error("STOMP frame exceeds {0} bytes")]
    TooLarge(usize),
    #[error("STOMP frame body does not end with NUL")]
    MissingNul,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_string(),
            ..Frame::default()
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Frame {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Frame {
        self.body = body;
        self
    }

    /// The first value of a header (STOMP 1.2: the first occurrence wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The frame's bytes. CONNECT/CONNECTED headers are not escaped (the spec says so).
    pub fn encode(&self) -> Vec<u8> {
        let escape = !matches!(self.command.as_str(), "CONNECT" | "CONNECTED");
        let mut out = Vec::with_capacity(self.body.len() + 128);
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        for (name, value) in &self.headers {
            if escape {
                out.extend_from_slice(escape_value(name).as_bytes());
                out.push(b':');
                out.extend_from_slice(escape_value(value).as_bytes());
            } else {
                out.extend_from_slice(format!("{name}:{value}").as_bytes());
            }
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ':' => out.push_str("\\c"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_value(v: &str) -> Result<String, FrameError> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('\\') => '\\',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('c') => ':',
            _ => return Err(FrameError::BadEscape),
        });
    }
    Ok(out)
}

/// Takes one frame off the front of `buf` if it holds a whole one (heart-beat EOLs before it are
/// consumed too); `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut Vec<u8>, max_frame: usize) -> Result<Option<Frame>, FrameError> {
    let lead = buf
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(buf.len());
    buf.drain(..lead);
    // The header ends at the first blank line, whichever line ending the sender uses.
    let lf = find(buf, b"\n\n").map(|i| (i, i + 2));
    let crlf = find(buf, b"\r\n\r\n").map(|i| (i, i + 4));
    let Some(head_end) = [lf, crlf].into_iter().flatten().min() else {
        return too_large_or_wait(buf, max_frame);
    };
    let head = std::str::from_utf8(&buf[..head_end.0]).map_err(|_| FrameError::NotUtf8)?;
    let mut lines = head.lines();
    let command = lines
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_string();
    let escape = command != "CONNECTED" && command != "CONNECT";
    let mut headers = Vec::new();
    for line in lines {
        let line = line.trim_end_matches('\r');
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| FrameError::BadHeader(line.chars().take(40).collect()))?;
        headers.push(if escape {
            (unescape_value(n)?, unescape_value(v)?)
        } else {
            (n.to_string(), v.to_string())
        });
    }
    let start = head_end.1;
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| FrameError::BadLength(v.clone()))
        })
        .transpose()?;
    let body_end = match length {
        Some(len) if start.saturating_add(len) > max_frame => {
            return Err(FrameError::TooLarge(max_frame))
        }
        Some(len) if buf.len() <= start + len => return Ok(None),
        Some(len) if buf[start + len] != 0 => return Err(FrameError::MissingNul),
        Some(len) => start + len,
        None => match buf[start..].iter().position(|&b| b == 0) {
            Some(i) => start + i,
            None => return too_large_or_wait(buf, max_frame),
        },
    };
    let body = buf[start..body_end].to_vec();
    buf.drain(..=body_end);
    Ok(Some(Frame {
        command,
        headers,
        body,
    }))
}

fn too_large_or_wait(buf: &[u8], max_frame: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() > max_frame {
        Err(FrameError::TooLarge(max_frame))
    } else {
        Ok(None)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_with_escapes_and_binary_bodies() {
        let f = Frame::new("SEND")
            .header("destination", "/queue/a:b")
            .header("note", "line\nbreak\\")
            .header("content-length", "3")
            .body(vec![0, 1, 0]);
        let mut buf = b"\n\r\n".to_vec();
        buf.extend(f.encode());
        buf.extend(b"\n");
        assert_eq!(decode(&mut buf, 1 << 20).unwrap(), Some(f));
        assert_eq!(decode(&mut buf, 1 << 20).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_and_bad_ones_fail() {
        let whole = Frame::new("MESSAGE")
            .header("a", "1")
            .body(b"hi".to_vec())
            .encode();
        let mut buf = whole[..whole.len() - 1].to_vec();
        assert_eq!(decode(&mut buf, 1 << 20).unwrap(), None);
        buf.push(0);
        assert!(decode(&mut buf, 1 << 20).unwrap().is_some());
        let mut bad = b"MESSAGE\nnocolon\n\n\0".to_vec();
        assert!(matches!(
            decode(&mut bad, 1 << 20),
            Err(FrameError::BadHeader(_))
        ));
        let mut bad = b"MESSAGE\ncontent-length:x\n\n\0".to_vec();
        assert!(matches!(
            decode(&mut bad, 1 << 20),
            Err(FrameError::BadLength(_))
        ));
        let mut big = vec![b'A'; 100];
        assert_eq!(decode(&mut big, 50), Err(FrameError::TooLarge(50)));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_typed(mut bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            while let Ok(Some(_)) = decode(&mut bytes, 1024) {}
        }

        #[test]
        fn any_header_value_round_trips(v in ".{0,20}", body in proptest::collection::vec(any::<u8>(), 0..32)) {
            let f = Frame::new("SEND").header("x", v).header("content-length", body.len().to_string()).body(body);
            let mut buf = f.encode();
            prop_assert_eq!(decode(&mut buf, 1 << 20).unwrap(), Some(f));
        }
    }
}
