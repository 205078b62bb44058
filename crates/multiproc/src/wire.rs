//! Messages over a byte stream: a pipe or a socket carries bytes, not messages, so each
//! message goes out as its length and then its bytes.
//!
//! The pipe lesson shows why; its chapter includes this code. Later lessons use it.

use std::io::{self, ErrorKind, Read, Write};

// ANCHOR: framing
/// Messages up to this size go out in one `write` (one system call); larger ones in two.
const ONE_WRITE: usize = 64 * 1024;

/// Send one message: its length as 4 bytes (little-endian), then its bytes.
pub fn send(to: &mut impl Write, message: &[u8]) -> io::Result<()> {
    let _sending = crate::trace::sending(message); // --trace: a span, an arrow to its receiver
    let header = u32::try_from(message.len())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "a message must be under 4 GiB"))?
        .to_le_bytes();
    if message.len() <= ONE_WRITE {
        to.write_all(&[&header[..], message].concat())
    } else {
        to.write_all(&header)?;
        to.write_all(message)
    }
}

/// Receive one message, or `None` if the other side closed the stream between messages.
pub fn recv(from: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let receiving = crate::trace::span("recv", || "receive a message".to_string()); // --trace
    crate::proc::faults::waiting("a message"); // a test may end this process here (proc::faults)
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match from.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None), // EOF at a boundary: a clean close
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let mut message = vec![0u8; u32::from_le_bytes(header) as usize];
    from.read_exact(&mut message)?; // EOF inside a message is an error
    receiving.received(&message); // --trace: the arrow from its sender ends here
    Ok(Some(message))
}
// ANCHOR_END: framing

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_boundaries() {
        let mut stream = Vec::new();
        for m in [&b"hello"[..], b"", b"hey", &vec![7u8; ONE_WRITE + 1]] {
            send(&mut stream, m).unwrap();
        }
        let mut r = &stream[..];
        assert_eq!(recv(&mut r).unwrap().unwrap(), b"hello");
        assert_eq!(recv(&mut r).unwrap().unwrap(), b"");
        assert_eq!(recv(&mut r).unwrap().unwrap(), b"hey");
        assert_eq!(recv(&mut r).unwrap().unwrap().len(), ONE_WRITE + 1);
        assert!(recv(&mut r).unwrap().is_none());
        let mut cut = &stream[..6];
        assert_eq!(recv(&mut cut).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    }
}
