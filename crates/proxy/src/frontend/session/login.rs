//! The login: greeting, TLS, the password check, under the login deadline.

use super::*;

/// The login: greeting, TLS when the client asks for it (and the proxy has a
/// certificate), the password check. `None` when the client went away, was refused (it was
/// then told why) or missed the deadline: [`ProxyConfig::login_timeout`] from accept to
/// the end of authentication, plus the delay after repeated failed logins.
///
/// [`ProxyConfig::login_timeout`]: crate::ProxyConfig::login_timeout
pub(super) async fn accept_login(
    mut client: Framed<ClientStream, PacketCodec>,
    id: u64,
    peer: SocketAddr,
    shared: &Shared,
    gen: &Generation,
) -> Option<(Framed<ClientStream, PacketCodec>, Login)> {
    let mut deadline = tokio::time::Instant::now() + gen.config.login_timeout;
    let timed_out = || {
        shared.stats.login_timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = id, %peer, "login deadline passed; closing");
    };
    let info: ServerInfo = shared.server_info.lock().unwrap().clone();
    let scramble = handshake::nonce();
    let greeted = async {
        handshake::greet(
            &mut client,
            id as u32,
            &info.version,
            info.capabilities,
            info.mariadb_capabilities,
            &scramble,
            gen.tls.is_some(),
        )
        .await?;
        let mut first = read_or_refuse(&mut client, id, peer).await?;
        if let (true, Some(acceptor)) = (handshake::is_ssl_request(&first), &gen.tls) {
            // The client starts TLS right after its SSLRequest; whatever the packet reader
            // already holds is the beginning of the TLS handshake.
            let parts = client.into_parts();
            match parts.io.upgrade(acceptor, parts.read_buf.freeze()).await {
                Ok(stream) => client = Framed::new(stream, PacketCodec::for_client()),
                Err(e) => {
                    shared.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(session = id, %peer, error = %e, "TLS handshake with the client failed");
                    return Err(LoginError::Gone);
                }
            }
            first = read_or_refuse(&mut client, id, peer).await?;
        }
        Ok((client, first))
    };
    let (mut client, first) = match tokio::time::timeout_at(deadline, greeted).await {
        Ok(Ok(x)) => x,
        Ok(Err(_)) => return None,
        Err(_) => {
            timed_out();
            return None;
        }
    };
    // Repeated failures for this address and user: the attempt waits before it is
    // checked, outside the client's own deadline.
    let user = packet::HandshakeResponse::parse(&first.payload)
        .map(|r| r.user)
        .unwrap_or_default();
    let delay = shared.gate.delay_for(peer.ip(), &user);
    if !delay.is_zero() {
        shared.stats.login_throttled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = id, %peer, user, ?delay, "delaying a login after repeated failures");
        tokio::time::sleep(delay).await;
        deadline += delay;
    }
    let login = if gen.config.require_tls && !client.get_ref().is_tls() {
        Err(LoginError::Refuse(
            first.seq.wrapping_add(1),
            ER_SECURE_TRANSPORT_REQUIRED,
            "HY000",
            "Connections using insecure transport are prohibited: goneaway proxy requires TLS \
             (require_tls); connect with TLS (mariadb --ssl, mysql --ssl-mode=REQUIRED)"
                .into(),
        ))
    } else {
        let checked =
            handshake::authenticate(&mut client, first, scramble, &gen.accounts, peer.ip());
        match tokio::time::timeout_at(deadline, checked).await {
            Ok(r) => r,
            Err(_) => {
                timed_out();
                return None;
            }
        }
    };
    match login {
        Ok(l) => {
            shared.gate.succeeded(peer.ip(), &user);
            Some((client, l))
        }
        Err(LoginError::Gone) => None,
        Err(LoginError::Refuse(seq, code, state, msg)) => {
            shared.stats.login_failures.fetch_add(1, Ordering::Relaxed);
            if code == ER_ACCESS_DENIED_ERROR {
                shared.gate.failed(peer.ip(), &user);
            }
            shared
                .stats
                .error_sent(if code == ER_SECURE_TRANSPORT_REQUIRED {
                    "tls_required"
                } else {
                    "access_denied"
                });
            tracing::info!(session = id, %peer, "login refused: {msg}");
            let _ = client
                .send(Packet::new(seq, packet::err_payload(code, state, &msg)))
                .await;
            None
        }
    }
}

/// The client's next login packet; a packet over the login budget is answered (1153) here.
pub(super) async fn read_or_refuse(
    client: &mut Framed<ClientStream, PacketCodec>,
    id: u64,
    peer: SocketAddr,
) -> Result<Packet, LoginError> {
    match handshake::next(client).await {
        Err(LoginError::Refuse(seq, code, state, msg)) => {
            tracing::info!(session = id, %peer, "login refused: {msg}");
            let _ = client
                .send(Packet::new(seq, packet::err_payload(code, state, &msg)))
                .await;
            Err(LoginError::Gone)
        }
        r => r,
    }
}
