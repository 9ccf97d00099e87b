//! curl's exit codes for the same conditions, in one place.
use ferry::{Error, ErrorKind};
use ferry_http::proto::Violation;

/// The curl exit code for `e`.
pub(crate) fn code_for(e: &Error) -> u8 {
    if e.violation() == Some(Violation::IncompleteBody) {
        return 18; // CURLE_PARTIAL_FILE
    }
    match e.kind() {
        ErrorKind::InvalidUrl => 3,                  // CURLE_URL_MALFORMAT
        ErrorKind::Resolve => 6,                     // CURLE_COULDNT_RESOLVE_HOST
        ErrorKind::Connect => 7,                     // CURLE_COULDNT_CONNECT
        ErrorKind::Protocol | ErrorKind::Limit => 8, // CURLE_WEIRD_SERVER_REPLY
        ErrorKind::BodyRead => 26,                   // CURLE_READ_ERROR
        ErrorKind::Timeout | ErrorKind::PoolExhausted => 28, // CURLE_OPERATION_TIMEDOUT
        ErrorKind::Tls => 35,                        // CURLE_SSL_CONNECT_ERROR
        ErrorKind::InvalidInput => 43,               // CURLE_BAD_FUNCTION_ARGUMENT
        ErrorKind::TooManyRedirects => 47,           // CURLE_TOO_MANY_REDIRECTS
        ErrorKind::EmptyReply => 52,                 // CURLE_GOT_NOTHING
        ErrorKind::Send => 55,                       // CURLE_SEND_ERROR
        ErrorKind::Receive => 56,                    // CURLE_RECV_ERROR
        ErrorKind::Certificate => 60,                // CURLE_PEER_FAILED_VERIFICATION
        ErrorKind::BodyTooLarge => 63,               // CURLE_FILESIZE_EXCEEDED
        ErrorKind::BodyNotReplayable => 65,          // CURLE_SEND_FAIL_REWIND
        ErrorKind::Auth => 67,                       // CURLE_LOGIN_DENIED
        ErrorKind::Redirect => 3,
        ErrorKind::Proxy => 56,      // curl: CONNECT tunnel failed
        ErrorKind::ProxyConfig => 5, // CURLE_COULDNT_RESOLVE_PROXY (bad proxy string)
        _ => 56,
    }
}
