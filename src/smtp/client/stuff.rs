//! Dot-stuffing of a stored body for DATA, without copying it.
//!
//! RFC 5321 §4.5.2: before sending a line that starts with ".", the client
//! adds one more "."; the data ends with CRLF "." CRLF. The body is yielded
//! as borrowed slices of the original with the extra dots and the end marker
//! as static slices between them, so the driver can write large pieces in
//! place and coalesce only the small ones.

/// The wire form of one body: iterate to get the pieces in order.
#[derive(Debug)]
pub struct Stuffed<'a> {
    rest: &'a [u8],
    /// The next piece is an inserted "." (the rest starts with a line that
    /// starts with ".").
    dot_next: bool,
    /// The terminator still to send, `None` once sent.
    tail: Option<&'static [u8]>,
}

impl<'a> Stuffed<'a> {
    pub fn new(body: &'a [u8]) -> Stuffed<'a> {
        // A body that does not end its last line gets the CRLF it is missing,
        // so the terminating "." is on a line of its own.
        let tail: &'static [u8] = if body.is_empty() || body.ends_with(b"\r\n") {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        };
        Stuffed {
            rest: body,
            dot_next: body.first() == Some(&b'.'),
            tail: Some(tail),
        }
    }
}

impl<'a> Iterator for Stuffed<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.dot_next {
            self.dot_next = false;
            return Some(b".");
        }
        if self.rest.is_empty() {
            return self.tail.take();
        }
        // A line starts after every LF; a bare LF counts too, so a "." after
        // it can never be read as an end of data by a lax server (smuggling).
        let mut from = 0;
        while let Some(nl) = self.rest[from..].iter().position(|&b| b == b'\n') {
            let end = from + nl + 1;
            if self.rest.get(end) == Some(&b'.') {
                let (piece, rest) = self.rest.split_at(end);
                self.rest = rest;
                self.dot_next = true;
                return Some(piece);
            }
            from = end;
        }
        Some(std::mem::take(&mut self.rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuffed(body: &[u8]) -> Vec<u8> {
        Stuffed::new(body).flatten().copied().collect()
    }

    #[test]
    fn plain_body_is_one_borrowed_piece_and_the_end_marker() {
        let body = b"Subject: x\r\n\r\nhello\r\n";
        let pieces: Vec<&[u8]> = Stuffed::new(body).collect();
        assert_eq!(pieces, vec![&body[..], b".\r\n"]);
        assert!(std::ptr::eq(pieces[0].as_ptr(), body.as_ptr()));
    }

    #[test]
    fn lines_starting_with_a_dot_get_another_dot() {
        assert_eq!(
            stuffed(b".first\r\nmid\r\n.\r\n..two\r\nend.\r\n"),
            b"..first\r\nmid\r\n..\r\n...two\r\nend.\r\n.\r\n"
        );
    }

    #[test]
    fn body_without_trailing_crlf_is_ended() {
        assert_eq!(stuffed(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(stuffed(b"a\r\n."), b"a\r\n..\r\n.\r\n");
    }

    #[test]
    fn empty_body_is_only_the_end_marker() {
        assert_eq!(stuffed(b""), b".\r\n");
    }

    #[test]
    fn a_dot_after_a_bare_lf_is_stuffed_too() {
        assert_eq!(stuffed(b"a\n.\r\n"), b"a\n..\r\n.\r\n");
    }
}
