//! One exchange on the wire: checkout or connect (direct, forward proxy, CONNECT tunnel, TLS),
//! the NTLM handshake on one connection, writing the request and reading the response head.
//! The request loop (auth rounds, redirects) is in the parent module.
use super::*;

impl Session {
    pub(super) fn exchange(
        &self,
        hop: &Hop<'_>,
        body: &mut Body,
        tls_id: u64,
        tls_config: &Arc<ClientConfig>,
        connects: &mut u32,
    ) -> Result<Response, Error> {
        let key = PoolKey::new(hop.url, Route::from_proxy(hop.route), hop.identity, tls_id)
            .ok_or(Error::Url("unsupported scheme or missing host"))?;
        let mut retried = false;
        loop {
            let mut lease = self.checkout(&key, hop, tls_config, connects, retried)?;
            let mut attempt = Attempt {
                reused: lease.is_reused(),
                response_bytes_seen: false,
            };
            match self.exchange_on(&mut lease, hop, body, &mut attempt) {
                Ok((head, decoder, close)) => {
                    return Ok(self.response(lease, head, decoder, close, hop.url));
                }
                Err(e) => {
                    self.close_on_error(lease);
                    // A pooled connection the server closed while idle fails before any
                    // response byte: retry once on a new connection if the body can be sent
                    // again and the method is idempotent (RFC 9110 §9.2.2: the server may have
                    // acted on a POST before the connection died).
                    let stale = matches!(
                        &e,
                        Error::Transport(TransportError::Closed(_) | TransportError::Io { .. })
                    );
                    if attempt.reused
                        && !attempt.response_bytes_seen
                        && stale
                        && !retried
                        && body.is_replayable()
                        && is_idempotent(hop.method)
                    {
                        retried = true;
                        self.shared.emit(&Event::Retrying);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// An idle connection for `key` that is alive (and, if NTLM-bound, bound to the hop's
    /// identity), or a new one. `fresh` (the one retry after a pooled connection died in
    /// flight) always makes a new one: the key's idle connections went idle at about the same
    /// time and are as likely to be dead, so the pool closes them instead of handing them out.
    pub(super) fn checkout(
        &self,
        key: &PoolKey,
        hop: &Hop<'_>,
        tls_config: &Arc<ClientConfig>,
        connects: &mut u32,
        fresh: bool,
    ) -> Result<Lease<PoolKey, Connection>, Error> {
        let identity = hop.identity;
        let mut lease = self
            .shared
            .pool
            .acquire(key, Instant::now(), hop.deadline, |c| {
                // I1 twice over: the key holds the identity, and a connection that completed an
                // NTLM handshake carries proof of whom it was authenticated as.
                !fresh
                    && c.bound.as_ref().is_none_or(|b| *b.identity() == identity)
                    && c.conn.is_idle_alive()
            })?;
        if lease.is_reused() {
            if self.shared.events.is_some() {
                let c = lease
                    .conn_ref()
                    .expect("a reused lease holds a connection (pool invariant)");
                if let Ok(peer) = c.conn.stream().peer_addr() {
                    self.shared.emit(&Event::Reused { peer, id: c.id });
                }
            }
        } else {
            let conn = self.connect(key, hop, tls_config)?;
            *connects += 1;
            lease.set(conn);
        }
        Ok(lease)
    }

    pub(super) fn close_on_error(&self, mut lease: Lease<PoolKey, Connection>) {
        if let Some(c) = lease.conn() {
            c.conn.stream_mut().shutdown();
            let id = c.id;
            self.shared.emit(&Event::Closed { id, why: "error" });
        }
        lease.discard();
    }

    pub(super) fn response(
        &self,
        lease: Lease<PoolKey, Connection>,
        head: ResponseHead,
        decoder: BodyDecoder,
        close: Option<CloseReason>,
        url: &Url,
    ) -> Response {
        let mut reader = BodyReader {
            lease: Some(lease),
            decoder,
            close,
            shared: self.shared.clone(),
        };
        if reader.decoder.is_done() {
            reader.finish();
        }
        Response {
            head,
            url: url.clone(),
            redirects: 0,
            connects: 0,
            body: reader,
        }
    }

    /// The NTLM handshake (MS-NLMP): type 1 and the server's type 2 on one connection, then
    /// type 3 with the request on the same connection, which is then bound to the identity.
    /// `for_proxy` runs it with a forward proxy (407, `Proxy-Authorization`) instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ntlm_exchange(
        &self,
        hop: &Hop<'_>,
        creds: &Credentials,
        for_proxy: bool,
        body: &mut Body,
        tls_id: u64,
        tls_config: &Arc<ClientConfig>,
        connects: &mut u32,
    ) -> Result<Response, Error> {
        let (challenge_status, challenges) = if for_proxy {
            (
                http::StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                header::PROXY_AUTHENTICATE,
            )
        } else {
            (http::StatusCode::UNAUTHORIZED, header::WWW_AUTHENTICATE)
        };
        let with = |v: &'_ HeaderValue| -> (Option<HeaderValue>, Option<HeaderValue>) {
            if for_proxy {
                (hop.authorization.cloned(), Some(v.clone()))
            } else {
                (Some(v.clone()), hop.proxy_authorization.cloned())
            }
        };
        let key = PoolKey::new(hop.url, Route::from_proxy(hop.route), hop.identity, tls_id)
            .ok_or(Error::Url("unsupported scheme or missing host"))?;
        let mut lease = self.checkout(&key, hop, tls_config, connects, false)?;
        let mut attempt = Attempt {
            reused: lease.is_reused(),
            response_bytes_seen: false,
        };
        if lease.conn().is_some_and(|c| c.bound.is_some()) {
            // Already authenticated as this identity (checkout checked the binding): the
            // connection itself carries the authentication, as NTLM servers expect.
            return match self.exchange_on(&mut lease, hop, body, &mut attempt) {
                Ok((head, decoder, close)) => {
                    Ok(self.response(lease, head, decoder, close, hop.url))
                }
                Err(e) => {
                    self.close_on_error(lease);
                    Err(e)
                }
            };
        }
        let result = (|| {
            let (type1, expect) = ferry_auth::ntlm::start(creds);
            let type1 = auth::header_value(type1)?;
            let (a1, p1) = with(&type1);
            let leg1 = Hop {
                authorization: a1.as_ref(),
                proxy_authorization: p1.as_ref(),
                ..*hop
            };
            // The body goes only with the last leg; the first carries none.
            let (head, mut decoder, close) =
                self.exchange_on(&mut lease, &leg1, &mut Body::Empty, &mut attempt)?;
            let token = match auth::ntlm_token(&head.headers, &challenges) {
                Ok(Some(t)) if head.status == challenge_status => t,
                Err(e) if head.status == challenge_status => return Err(e),
                // No type 2: the server's answer is the caller's.
                _ => return Ok((head, decoder, close, None)),
            };
            let persistent = close.is_none()
                && lease.conn().is_some_and(|c| {
                    matches!(
                        c.conn.drain_body(&mut decoder, self.shared.drain_limit),
                        Ok(true)
                    )
                });
            if !persistent {
                return Err(Error::Auth(ferry_auth::AuthError::BadChallenge(
                    "NTLM needs a persistent connection, but the server closes it",
                )));
            }
            let (type3, bound) = expect.on_challenge(&token, &hop.identity)?;
            let type3 = auth::header_value(type3)?;
            let (a3, p3) = with(&type3);
            let leg3 = Hop {
                authorization: a3.as_ref(),
                proxy_authorization: p3.as_ref(),
                ..*hop
            };
            let (head, decoder, close) = self.exchange_on(&mut lease, &leg3, body, &mut attempt)?;
            let accepted = head.status != challenge_status;
            Ok((head, decoder, close, accepted.then_some(bound)))
        })();
        match result {
            Ok((head, decoder, close, bound)) => {
                if let (Some(b), Some(c)) = (bound, lease.conn()) {
                    c.bound = Some(b);
                }
                Ok(self.response(lease, head, decoder, close, hop.url))
            }
            Err(e) => {
                self.close_on_error(lease);
                Err(e)
            }
        }
    }

    /// A new connection for `key`: to the origin, or to the proxy (TLS to it for an HTTPS
    /// proxy) and, for a tunnel, CONNECT and then TLS to the origin inside.
    pub(super) fn connect(
        &self,
        key: &PoolKey,
        hop: &Hop<'_>,
        tls_config: &Arc<ClientConfig>,
    ) -> Result<Connection, Error> {
        let sh = &self.shared;
        let (timeouts, deadline) = (hop.timeouts, hop.deadline);
        let proxy = match hop.route {
            ferry_proxy::Route::Direct => None,
            ferry_proxy::Route::Forward(p) | ferry_proxy::Route::Tunnel(p) => Some(p),
        };
        let (host, port) = match proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (key.host(), key.port()),
        };
        let resolve_budget = match (timeouts.resolve, deadline) {
            (r, None) => r,
            (r, Some(d)) => {
                let left = d
                    .checked_duration_since(Instant::now())
                    .unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    return Err(TransportError::Timeout(Phase::Resolve).into());
                }
                Some(r.map_or(left, |r| r.min(left)))
            }
        };
        let addrs = resolve(host, port, resolve_budget)?;
        if sh.events.is_some() {
            for a in &addrs {
                sh.emit(&Event::Connecting { host, addr: *a });
            }
        }
        let tcp = connect_tcp(&addrs, timeouts.connect, deadline)?;
        let id = sh.next_conn_id.fetch_add(1, Ordering::Relaxed);
        if sh.events.is_some() {
            if let Ok(peer) = tcp.peer_addr() {
                sh.emit(&Event::Connected { peer, id });
            }
        }
        let mut stream = Stream::plain(tcp);
        if proxy.is_some_and(|p| p.scheme == ferry_proxy::ProxyScheme::Https) {
            stream = stream.start_tls(host, tls_config.clone(), timeouts.connect, deadline)?;
            self.emit_tls(&stream);
        }
        let mut bound = None;
        if let ferry_proxy::Route::Tunnel(p) = hop.route {
            let user_agent = sh
                .default_headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok());
            let request = tunnel::TunnelRequest {
                proxy: p,
                host: key.host(),
                port: key.port(),
                user_agent,
                creds: hop.proxy_creds,
                ambient: hop.proxy_ambient,
                identity: hop.identity,
                policy: &sh.proxy_policy,
                auth_policy: &sh.auth_policy,
                digests: &sh.digests,
                timeouts,
                deadline,
                parse: sh.parse,
                limits: sh.limits,
                shared: sh,
            };
            let (s, b) = tunnel::open_tunnel(stream, &request)?;
            stream = s;
            bound = b;
        }
        if key.is_tls() {
            stream =
                stream.start_tls(key.host(), tls_config.clone(), timeouts.connect, deadline)?;
            self.emit_tls(&stream);
        }
        Ok(Connection {
            conn: Conn::new(stream, timeouts),
            id,
            bound,
        })
    }

    pub(super) fn emit_tls(&self, s: &Stream) {
        if self.shared.events.is_some() {
            if let Some((version, cipher)) = s.tls_info() {
                self.shared.emit(&Event::TlsEstablished {
                    version: &version,
                    cipher: &cipher,
                });
            }
        }
    }

    /// One request/response head exchange on a leased connection.
    pub(super) fn exchange_on(
        &self,
        lease: &mut Lease<PoolKey, Connection>,
        hop: &Hop<'_>,
        body: &mut Body,
        attempt: &mut Attempt,
    ) -> Result<(ResponseHead, BodyDecoder, Option<CloseReason>), Error> {
        let Hop {
            method,
            url,
            headers,
            suppressed,
            timeouts,
            deadline,
            identity: _,
            authorization: _,
            route,
            proxy_authorization,
            proxy_creds: _,
            proxy_ambient: _,
        } = *hop;
        let forward = matches!(route, ferry_proxy::Route::Forward(_));
        let sh = &self.shared;
        let c = lease
            .conn()
            .expect("the lease was filled before the exchange (set above)");
        c.conn.set_timeouts(timeouts, deadline);
        // A reused connection has read earlier responses: only bytes after this point count
        // as this response's (they decide whether a retry on a new connection is safe).
        let read_before = c.conn.byte_counts().0;

        let body_len = match body.len() {
            Some(0) if !method_has_body(method) => BodyLength::None,
            Some(n) => BodyLength::Known(n),
            None => BodyLength::Chunked,
        };
        let expect = match body_len {
            BodyLength::Known(n) => n > sh.expect_threshold,
            BodyLength::Chunked => sh.expect_threshold != u64::MAX,
            BodyLength::None => false,
        } && !headers.contains_key(header::EXPECT);
        // The common case (no headers of the caller's, no Expect) allocates nothing here.
        let mut merged;
        let authorization = hop
            .authorization
            .filter(|_| !headers.contains_key(header::AUTHORIZATION));
        // I3: a Proxy-Authorization, ours or the caller's, goes only to a forward proxy; never
        // to an origin, never inside a tunnel.
        let proxy_authorization = proxy_authorization.filter(|_| forward);
        let strip_callers_proxy_auth =
            !forward && headers.contains_key(header::PROXY_AUTHORIZATION);
        let plain = headers.is_empty()
            && !expect
            && suppressed.is_empty()
            && authorization.is_none()
            && proxy_authorization.is_none();
        let all_headers = if plain {
            &sh.default_headers
        } else {
            merged = HeaderMap::with_capacity(headers.len() + 4);
            for (k, v) in &sh.default_headers {
                if !headers.contains_key(k) && !suppressed.contains(k) {
                    merged.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in headers {
                merged.append(k.clone(), v.clone());
            }
            if expect {
                merged.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            }
            if let Some(a) = authorization {
                merged.insert(header::AUTHORIZATION, a.clone());
            }
            if strip_callers_proxy_auth {
                merged.remove(header::PROXY_AUTHORIZATION);
            }
            if let Some(a) = proxy_authorization {
                merged.insert(header::PROXY_AUTHORIZATION, a.clone());
            }
            &merged
        };
        let requested_close = all_headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));

        let mut out = Vec::with_capacity(256);
        write_request_head(
            &RequestHead {
                method,
                url,
                target: if forward {
                    TargetForm::Absolute
                } else {
                    TargetForm::Origin
                },
                headers: all_headers,
                body: body_len,
            },
            &mut out,
        )?;
        sh.emit(&Event::RequestHead(&out));

        let mut parser = HeadParser::new(sh.parse, sh.limits, false);
        let mut body_sent = matches!(body_len, BodyLength::None);
        let mut waiting_continue = false;
        match body {
            Body::Bytes(b) if !expect && b.len() <= COALESCE_BODY_MAX => {
                c.conn
                    .write_all_vectored(&mut [IoSlice::new(&out), IoSlice::new(b)])?;
                body_sent = true;
            }
            _ => {
                c.conn.write_all(&out)?;
                if expect {
                    waiting_continue = true;
                } else if !body_sent {
                    send_body(&mut c.conn, body)?;
                    body_sent = true;
                }
            }
        }

        let head = loop {
            let wait = waiting_continue.then_some(sh.expect_timeout);
            let parsed = c.conn.read_head(&mut parser, wait).inspect_err(|_| {
                attempt.response_bytes_seen = c.conn.byte_counts().0 > read_before;
            })?;
            attempt.response_bytes_seen = true;
            match parsed {
                None => {
                    // No 100 Continue in time: send the body anyway (RFC 9110 §10.1.1).
                    waiting_continue = false;
                    send_body(&mut c.conn, body)?;
                    body_sent = true;
                }
                Some(Parsed::Interim(status)) => {
                    sh.emit(&Event::ResponseHead {
                        version: http::Version::HTTP_11,
                        status,
                        reason: "",
                        headers: &HeaderMap::new(),
                    });
                    if waiting_continue && status == http::StatusCode::CONTINUE {
                        waiting_continue = false;
                        send_body(&mut c.conn, body)?;
                        body_sent = true;
                    }
                }
                Some(Parsed::Final(head)) => break head,
            }
        };
        sh.emit(&Event::ResponseHead {
            version: head.version,
            status: head.status,
            reason: &head.reason,
            headers: &head.headers,
        });
        let framing = body_framing(method, &head, &sh.parse)?;
        let mut close = framing.close;
        if close.is_none() && requested_close {
            close = Some(CloseReason::RequestedClose);
        }
        if close.is_none() && !body_sent {
            // The server answered before the body was sent; the connection now expects body
            // bytes that will never come.
            close = Some(CloseReason::UnreadBody);
        }
        let decoder = BodyDecoder::new(framing.body, sh.parse, sh.limits);
        debug_assert!(framing.body != BodyFraming::None || decoder.is_done());
        Ok((head, decoder, close))
    }
}

fn send_body(conn: &mut Conn, body: &mut Body) -> Result<(), Error> {
    match body {
        Body::Empty => Ok(()),
        Body::Bytes(b) => Ok(conn.write_all(b)?),
        Body::Reader { reader, len } => {
            let mut left = *len;
            let mut block = vec![
                0u8;
                UPLOAD_BLOCK
                    .min(usize::try_from(left).unwrap_or(UPLOAD_BLOCK))
                    .max(1)
            ];
            while left > 0 {
                let want = block
                    .len()
                    .min(usize::try_from(left).unwrap_or(block.len()));
                let n = match reader.read(&mut block[..want]) {
                    Ok(0) => {
                        return Err(Error::BodyRead(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("body reader ended {left} bytes before its declared length"),
                        )))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::BodyRead(e)),
                };
                conn.write_all(&block[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
        Body::Chunked(reader) => {
            let mut block = vec![0u8; UPLOAD_BLOCK];
            loop {
                let n = match reader.read(&mut block) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::BodyRead(e)),
                };
                if n == 0 {
                    conn.finish_chunked()?;
                    return Ok(());
                }
                conn.write_chunk(&block[..n])?;
            }
        }
    }
}

/// Methods that may be sent again automatically (RFC 9110 §9.2.2).
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Methods whose empty body is still announced with `Content-Length: 0`.
fn method_has_body(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || *m == Method::PATCH
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}
