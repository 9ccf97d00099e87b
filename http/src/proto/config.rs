//! Named limits and leniencies. Strict by default; each leniency is its own documented switch.

/// Named limits on what the peer may send. Each has a default and a clear error
/// ([`crate::Error::Limit`] carries the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_head_bytes`: bytes in one response head, status line to the blank line.
    /// Default 64 KiB (WinHTTP's `WINHTTP_OPTION_MAX_RESPONSE_HEADER_SIZE` default).
    pub max_head_bytes: usize,
    /// `max_headers`: header fields in one response head. Default 100.
    pub max_headers: usize,
    /// `max_interim_responses`: 1xx responses before the final one. Default 10.
    pub max_interim_responses: usize,
    /// `max_chunk_ext_bytes`: bytes of chunk extensions on one chunk-size line. Default 4 KiB.
    pub max_chunk_ext_bytes: usize,
    /// `max_trailer_bytes`: bytes of the trailer section. Default 16 KiB (h11's head limit).
    pub max_trailer_bytes: usize,
}

impl Limits {
    /// Default for `max_head_bytes`.
    pub const MAX_HEAD_BYTES: usize = 64 * 1024;
    /// Default for `max_headers`.
    pub const MAX_HEADERS: usize = 100;
    /// Default for `max_interim_responses`.
    pub const MAX_INTERIM_RESPONSES: usize = 10;
    /// Default for `max_chunk_ext_bytes`.
    pub const MAX_CHUNK_EXT_BYTES: usize = 4 * 1024;
    /// Default for `max_trailer_bytes`.
    pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: Self::MAX_HEAD_BYTES,
            max_headers: Self::MAX_HEADERS,
            max_interim_responses: Self::MAX_INTERIM_RESPONSES,
            max_chunk_ext_bytes: Self::MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: Self::MAX_TRAILER_BYTES,
        }
    }
}

/// Leniencies, all off by default (strict). Each switch documents what it tolerates and why one
/// might want it, in the style of httparse's `ParserConfig`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseConfig {
    /// Accept a bare LF as a line ending in chunk-size lines, after chunk data and in trailers.
    ///
    /// # Background
    /// RFC 9112 §2.2 allows a recipient to accept a lone LF, but a lone LF is a classic
    /// request-smuggling lever when two parsers disagree. Off: it is an error.
    pub allow_bare_lf_in_chunked: bool,
    /// Accept obsolete line folding (obs-fold) in response headers, replacing it with spaces.
    ///
    /// # Background
    /// RFC 9112 §5.2: a user agent may replace obs-fold with SP. Off: the head is malformed.
    pub allow_obsolete_multiline_headers: bool,
    /// Accept whitespace between a header name and its colon.
    ///
    /// # Background
    /// RFC 9112 §5.1 requires rejecting such responses; some old servers send them.
    pub allow_spaces_after_header_name: bool,
    /// Accept a Content-Length holding a comma-separated list of identical values (`5, 5`).
    ///
    /// # Background
    /// RFC 9110 §8.6 lets a recipient fold such a list; strict mode only folds identical
    /// duplicate *fields*, not lists within one field.
    pub allow_content_length_list: bool,
    /// Accept `Transfer-Encoding` in an HTTP/1.0 response, reading the body until the close.
    ///
    /// # Background
    /// RFC 9112 §6.1 calls such a message faulty framing that a recipient reads as best it
    /// can; what it reads is the raw coded stream (chunk sizes and all), which a download
    /// would save as the file. Off: it is an error ([`Violation::BadTransferEncoding`]).
    ///
    /// [`Violation::BadTransferEncoding`]: crate::proto::Violation::BadTransferEncoding
    pub allow_transfer_encoding_in_http10: bool,
}
