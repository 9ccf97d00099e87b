//! The blocking transport: TCP through socket2, TLS through rustls, WinHTTP-style timeouts.
