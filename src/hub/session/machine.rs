//! What a WebSocket client's frames mean, without the socket: client text
//! in, [`Action`]s out, for the session's shell ([`super::WsSession`]) to
//! carry out in order.
//!
//! The machine holds the session's policy state: whether it is admitted yet
//! (a session that must bring a token, or asked to be admitted with its
//! first `register` frame, waits), who its token says it is, and which
//! channels it has joined. It decides registration (with or without a
//! token), subscriptions (limit and private channels), token refresh and
//! swap, and when the session must end; admission itself is
//! [`crate::hub::admission`]'s. It never writes, sends or schedules
//! anything itself, so it is tested without an actix System, and another
//! WebSocket library would need only another shell.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;

use super::SessionSettings;
use crate::hub::admission::{self, Admitted, SessionStart};
use crate::hub::messages::DisconnectReason;
use crate::ids::{ChannelName, ClientId};
use crate::protocol::{close_code, ClientFrame, Position, ServerFrame};
use crate::token::Identity;

/// One thing the shell must do, in the order given.
#[derive(Debug)]
pub enum Action {
    /// Write this frame.
    Send(ByteString),
    /// Write an `error` frame with this text; the session stays open.
    Error(String),
    /// Join `NotifyServer` as admitted (`Admitted::connect`), then write
    /// `Admitted::answer` before handling anything else. Always the last
    /// action of a list.
    Join(Admitted),
    /// Register again under `id` (`Register`), resuming from `resume`, then
    /// write the answer's frames (`Joined::frames` with `id` and no
    /// channel) before handling anything else. Always the last action of a
    /// list.
    Register {
        id: ClientId,
        resume: Option<Position>,
    },
    /// Tell `NotifyServer` the session joins `channel`.
    Subscribe(ChannelName),
    /// Tell `NotifyServer` the session leaves `channel`.
    Unsubscribe(ChannelName),
    /// Call [`Machine::expired`] after this long, in place of any earlier
    /// such call still waiting.
    ExpireIn(Duration),
    /// Close the connection with `code` and stop; nothing follows.
    Close { code: u16, reason: DisconnectReason },
}

/// The frames that a text, a timer or the opening amount to.
pub type Actions = Vec<Action>;

/// Sent when a session waiting for its token gets anything else.
const REGISTER_FIRST: &str = "send {\"type\":\"register\",\"token\":...} first";

/// Sent when an admitted session sends a position.
const POSITION_ONLY_AT_ADMISSION: &str = "a position is taken only when the session is \
     admitted: put since/epoch in the URL, or connect with await_register=1 and send them in the \
     first register frame";

pub struct Machine {
    settings: Arc<SessionSettings>,
    /// The request's choices, applied once the session is admitted.
    start: Option<SessionStart>,
    /// Whether `NotifyServer` knows this session. False only while it waits
    /// for its first `register` frame (or its token).
    admitted: bool,
    /// Who a token says the client is; `None` for anonymous clients.
    identity: Option<Identity>,
    /// This session's channels, for its limit and permission checks.
    channels: BTreeSet<ChannelName>,
}

impl Machine {
    pub fn new(settings: Arc<SessionSettings>, start: SessionStart) -> Self {
        Self {
            settings,
            start: Some(start),
            admitted: false,
            identity: None,
            channels: BTreeSet::new(),
        }
    }

    /// Whether `NotifyServer` knows this session.
    pub fn admitted(&self) -> bool {
        self.admitted
    }

    /// The connection is open: admit the session now, unless it must bring
    /// a token first or asked to be admitted by its first `register` frame
    /// (then the shell ends the wait with [`Machine::token_wait_over`]).
    pub fn opened(&mut self) -> Actions {
        let mut out = Actions::new();
        let start = self.start.as_ref();
        let identity = start.and_then(|s| s.identity.as_ref());
        let awaits = start.is_some_and(|s| s.await_register);
        if !awaits && self.settings.admission.admits(identity).is_ok() {
            self.admit(&mut out);
        }
        out
    }

    /// The session waited for its token (or first `register` frame) as
    /// long as it may.
    pub fn token_wait_over(&mut self) -> Actions {
        vec![unauthorized("no token received in time".into())]
    }

    /// The session's token has expired.
    pub fn expired(&mut self) -> Actions {
        vec![Action::Close {
            code: close_code::TOKEN_EXPIRED,
            reason: DisconnectReason::TokenExpired,
        }]
    }

    /// A binary message: herald speaks JSON text only.
    pub fn binary(&mut self) -> Actions {
        let mut out = Actions::new();
        let error = "binary messages are not supported: send JSON text";
        self.refuse(error.into(), &mut out);
        out
    }

    /// A complete text message from the client.
    pub fn text(&mut self, text: &str) -> Actions {
        let mut out = Actions::new();
        match ClientFrame::parse(text) {
            Ok(frame) => self.frame(frame, &mut out),
            Err(reason) => self.refuse(reason, &mut out),
        }
        out
    }

    fn frame(&mut self, frame: ClientFrame, out: &mut Actions) {
        match frame {
            ClientFrame::Register {
                id,
                token,
                since,
                epoch,
            } => {
                let resume = match (since, epoch) {
                    (None, None) => None,
                    (Some(since), Some(epoch)) => match Position::new(epoch, since) {
                        Ok(position) => Some(position),
                        Err(e) => return self.refuse(e, out),
                    },
                    _ => {
                        let error = "give both `since` and `epoch`, or neither";
                        return self.refuse(error.into(), out);
                    }
                };
                if resume.is_some() && self.admitted {
                    // Messages may already be on their way to this session:
                    // a replay now could arrive after newer ones.
                    return out.push(Action::Error(POSITION_ONLY_AT_ADMISSION.into()));
                }
                match (token, id) {
                    (Some(token), _) => self.register_with_token(&token, resume, out),
                    (None, Some(id)) => self.register_anonymous(id, resume, out),
                    (None, None) => self.refuse("register needs an `id` or a `token`".into(), out),
                }
            }
            _ if !self.admitted => out.push(unauthorized(REGISTER_FIRST.into())),
            ClientFrame::Subscribe { channel } => self.subscribe(channel, out),
            ClientFrame::Unsubscribe { channel } => self.unsubscribe(channel, out),
            ClientFrame::Refresh { token } => self.refresh(&token, out),
        }
    }

    /// Admits the session with the request's choices, as changed by the
    /// `register` frame that admits it: one `Connect` with id, channels and
    /// resume, so that the replay comes before any live message. Every
    /// channel is checked against the identity admitted with, which may be
    /// another than the upgrade request's; one it may not join is answered
    /// with an `error` frame and not joined.
    fn admit(&mut self, out: &mut Actions) {
        let start = self.start.take().unwrap_or_default();
        let mut admitted = self.settings.admission.admit(start);
        if let Some(identity) = admitted.identity.take() {
            self.set_identity(identity, out);
        }
        self.channels.extend(admitted.channels.iter().cloned());
        self.admitted = true;
        out.push(Action::Join(admitted));
    }

    /// Changes the request's choices before admission, then admits.
    fn admit_with(&mut self, change: impl FnOnce(&mut SessionStart), out: &mut Actions) {
        change(self.start.get_or_insert_with(SessionStart::default));
        self.admit(out);
    }

    fn register_with_token(&mut self, token: &str, resume: Option<Position>, out: &mut Actions) {
        match self.settings.admission.identify(token) {
            // Admission registers the identity, joins the channels the
            // upgrade asked for (which may need it) and resumes.
            Ok(identity) if !self.admitted => self.admit_with(
                |start| {
                    start.identity = Some(identity);
                    start.resume = resume.or(start.resume.take());
                },
                out,
            ),
            // A token swap: the new identity's id, expiry and channels.
            Ok(identity) => {
                let id = identity.id.clone();
                self.set_identity(identity, out);
                out.push(Action::Register { id, resume });
            }
            Err(refusal) => self.refuse(refusal.to_string(), out),
        }
    }

    fn register_anonymous(&mut self, id: ClientId, resume: Option<Position>, out: &mut Actions) {
        if let Err(refusal) = self.settings.admission.admits(None) {
            return self.refuse(refusal.to_string(), out);
        }
        if let Some(identity) = &self.identity {
            let error = format!(
                "this session is signed in as {}; register with a new token to change id",
                identity.id
            );
            return out.push(Action::Error(error));
        }
        if !self.admitted {
            return self.admit_with(
                |start| {
                    start.id = Some(id);
                    start.resume = resume.or(start.resume.take());
                },
                out,
            );
        }
        out.push(Action::Register { id, resume });
    }

    fn refresh(&mut self, token: &str, out: &mut Actions) {
        if let Err(refusal) = self.settings.admission.tokens_on() {
            return out.push(Action::Error(refusal.to_string()));
        }
        let Some(current) = self.identity.as_ref().map(|i| i.id.clone()) else {
            let error = "refresh needs a session registered with a token";
            return out.push(Action::Error(error.into()));
        };
        match self.settings.admission.identify(token) {
            Ok(identity) if identity.id == current => {
                let exp = identity.expires_at;
                self.set_identity(identity, out);
                out.push(Action::Send(
                    ServerFrame::Refreshed { id: &current, exp }.encode(),
                ));
            }
            Ok(_) => out.push(Action::Error("refresh token is for another id".into())),
            Err(refusal) => out.push(Action::Error(refusal.to_string())),
        }
    }

    /// Replaces the identity, re-arms the expiry and leaves the private
    /// channels the new token no longer lists.
    fn set_identity(&mut self, identity: Identity, out: &mut Actions) {
        out.push(Action::ExpireIn(admission::token_lifetime(&identity)));
        self.identity = Some(identity);
        let admission = &self.settings.admission;
        let revoked: Vec<ChannelName> = self
            .channels
            .iter()
            .filter(|c| admission.may_join(c, self.identity.as_ref()).is_err())
            .cloned()
            .collect();
        for channel in revoked {
            self.unsubscribe(channel, out);
        }
    }

    fn subscribe(&mut self, channel: ChannelName, out: &mut Actions) {
        if !self.channels.contains(&channel) {
            if self.channels.len() >= self.settings.max_channels {
                let error = format!(
                    "subscription limit reached: at most {} channels per session",
                    self.settings.max_channels
                );
                return out.push(Action::Error(error));
            }
            let admission = &self.settings.admission;
            if let Err(error) = admission.may_join(&channel, self.identity.as_ref()) {
                return out.push(Action::Error(error));
            }
            self.channels.insert(channel.clone());
            out.push(Action::Subscribe(channel.clone()));
        }
        let frame = ServerFrame::Subscribed {
            channel: &channel,
            epoch: None,
            seq: None,
        };
        out.push(Action::Send(frame.encode()));
    }

    fn unsubscribe(&mut self, channel: ChannelName, out: &mut Actions) {
        let frame = ServerFrame::Unsubscribed { channel: &channel }.encode();
        if self.channels.remove(&channel) {
            out.push(Action::Unsubscribe(channel));
        }
        out.push(Action::Send(frame));
    }

    /// An error frame for an admitted session; for one still waiting for its
    /// token, the end of it.
    fn refuse(&mut self, error: String, out: &mut Actions) {
        out.push(if self.admitted {
            Action::Error(error)
        } else {
            unauthorized(error)
        });
    }
}

/// Closes the session: no valid token (or first `register` frame) when one
/// was needed.
fn unauthorized(why: String) -> Action {
    Action::Close {
        code: close_code::UNAUTHORIZED,
        reason: DisconnectReason::Unauthorized(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::hub::admission::Admission;
    use crate::token::{TokenSigner, TokenVerifier};

    const SECRET: &str = "a-secret-of-enough-length-for-hs256";

    fn settings(require_token: bool) -> Arc<SessionSettings> {
        let secret = Secret::new(SECRET);
        Arc::new(SessionSettings {
            heartbeat_interval: Duration::from_secs(1),
            client_timeout: Duration::from_secs(2),
            max_frame_bytes: 1024,
            max_pending_messages: 8,
            max_channels: 3,
            frames_per_sec: 10,
            admission: Admission {
                private_prefix: "private:".into(),
                tokens: Some(TokenVerifier::new(&secret, "herald").unwrap()),
                require_token,
            },
            metrics: Arc::new(crate::metrics::Metrics::new()),
        })
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn id(name: &str) -> ClientId {
        ClientId::parse(name).unwrap()
    }

    fn token(sub: &str, channels: &[&str]) -> String {
        let signer = TokenSigner::new(&Secret::new(SECRET), "herald").unwrap();
        let channels: Vec<ChannelName> = channels.iter().map(|c| channel(c)).collect();
        signer
            .sign(&id(sub), &channels, Duration::from_secs(60))
            .unwrap()
    }

    fn register_token(token: &str) -> String {
        format!(r#"{{"type":"register","token":"{token}"}}"#)
    }

    fn subscribe(name: &str) -> String {
        format!(r#"{{"type":"subscribe","channel":"{name}"}}"#)
    }

    /// A machine admitted at once, as a client with `start`.
    fn admitted(settings: Arc<SessionSettings>, start: SessionStart) -> Machine {
        let mut machine = Machine::new(settings, start);
        assert!(matches!(machine.opened().last(), Some(Action::Join(_))));
        machine
    }

    fn joined(actions: &[Action]) -> &Admitted {
        match actions.last() {
            Some(Action::Join(admitted)) => admitted,
            other => panic!("no join: {other:?}"),
        }
    }

    fn closed(actions: &[Action]) -> (u16, &DisconnectReason) {
        match actions {
            [Action::Close { code, reason }] => (*code, reason),
            other => panic!("no close: {other:?}"),
        }
    }

    fn error(actions: &[Action]) -> &str {
        match actions {
            [Action::Error(error)] => error,
            other => panic!("no error: {other:?}"),
        }
    }

    fn sent(actions: &[Action]) -> Vec<String> {
        let frames = actions.iter().filter_map(|a| match a {
            Action::Send(frame) => Some(frame.to_string()),
            _ => None,
        });
        frames.collect()
    }

    #[test]
    fn a_session_with_an_id_is_admitted_at_once() {
        let start = SessionStart {
            id: Some(id("63")),
            channels: vec![channel("news")],
            ..SessionStart::default()
        };
        let mut machine = Machine::new(settings(false), start);
        assert!(!machine.admitted());
        let actions = machine.opened();
        let admitted = joined(&actions);
        assert_eq!(actions.len(), 1);
        assert_eq!(admitted.id, Some(id("63")));
        assert_eq!(admitted.channels, [channel("news")]);
        assert!(machine.admitted());
    }

    #[test]
    fn await_register_admits_with_the_first_register_frame() {
        let start = SessionStart {
            channels: vec![channel("news")],
            await_register: true,
            ..SessionStart::default()
        };
        let mut machine = Machine::new(settings(false), start);
        assert!(machine.opened().is_empty());
        let register = r#"{"type":"register","id":"7","since":3,"epoch":"E"}"#;
        let actions = machine.text(register);
        let admitted = joined(&actions);
        assert_eq!(admitted.id, Some(id("7")));
        assert_eq!(admitted.channels, [channel("news")]);
        assert_eq!(admitted.resume, Some(Position::new("E".into(), 3).unwrap()));
        // Registered again later: no position any more, the id changes.
        let again = r#"{"type":"register","id":"7","since":3,"epoch":"E"}"#;
        assert!(error(&machine.text(again)).contains("a position is taken only"));
        let actions = machine.text(r#"{"type":"register","id":"8"}"#);
        assert!(
            matches!(&actions[..], [Action::Register { id: i, resume: None }] if *i == id("8"))
        );
    }

    #[test]
    fn a_token_admits_with_its_id_its_expiry_and_its_private_channels() {
        let start = SessionStart {
            id: Some(id("7")),
            channels: vec![channel("private:63"), channel("private:64")],
            await_register: true,
            ..SessionStart::default()
        };
        let mut machine = Machine::new(settings(false), start);
        assert!(machine.opened().is_empty());
        let actions = machine.text(&register_token(&token("63", &["private:63"])));
        assert!(matches!(actions[0], Action::ExpireIn(left) if left <= Duration::from_secs(60)));
        let admitted = joined(&actions);
        assert_eq!(admitted.id, Some(id("63")));
        assert_eq!(admitted.channels, [channel("private:63")]);
        assert_eq!(admitted.refused.len(), 1);
        assert!(admitted.refused[0].contains("private:64"));
        // Signed in: an anonymous register may not change the id.
        let anonymous = machine.text(r#"{"type":"register","id":"8"}"#);
        assert!(error(&anonymous).contains("signed in as 63"));
        let closed_now = machine.expired();
        let (code, reason) = closed(&closed_now);
        assert_eq!(code, close_code::TOKEN_EXPIRED);
        assert_eq!(*reason, DisconnectReason::TokenExpired);
    }

    #[test]
    fn a_bad_token_or_frame_before_admission_closes_and_after_it_is_an_error() {
        let start = SessionStart {
            await_register: true,
            ..SessionStart::default()
        };
        let mut waiting = Machine::new(settings(false), start);
        let actions = waiting.text(&register_token("nope"));
        let (code, reason) = closed(&actions);
        assert_eq!(code, close_code::UNAUTHORIZED);
        assert!(reason.to_string().contains("invalid token"));
        let start = SessionStart {
            await_register: true,
            ..SessionStart::default()
        };
        let mut waiting = Machine::new(settings(false), start);
        assert_eq!(closed(&waiting.text(&subscribe("news"))).0, 4001);
        assert_eq!(closed(&waiting.binary()).0, 4001);

        let mut machine = admitted(settings(false), SessionStart::default());
        assert!(error(&machine.text(&register_token("nope"))).contains("invalid token"));
        assert!(error(&machine.text("{")).contains("not valid JSON"));
        assert!(error(&machine.binary()).contains("binary"));
        let half = r#"{"type":"register","id":"7","since":3}"#;
        assert!(error(&machine.text(half)).contains("both"));
    }

    #[test]
    fn require_token_waits_for_a_token_and_refuses_an_id() {
        let start = SessionStart {
            id: Some(id("7")),
            ..SessionStart::default()
        };
        let mut machine = Machine::new(settings(true), start);
        assert!(machine.opened().is_empty(), "waits for a token");
        let actions = machine.text(r#"{"type":"register","id":"7"}"#);
        let (code, reason) = closed(&actions);
        assert_eq!(code, close_code::UNAUTHORIZED);
        assert!(reason.to_string().contains("requires a token"));

        let mut machine = Machine::new(settings(true), SessionStart::default());
        assert!(machine.opened().is_empty());
        let over = machine.token_wait_over();
        assert!(closed(&over)
            .1
            .to_string()
            .contains("no token received in time"));

        let mut machine = Machine::new(settings(true), SessionStart::default());
        assert!(machine.opened().is_empty());
        let actions = machine.text(&register_token(&token("63", &[])));
        assert_eq!(joined(&actions).id, Some(id("63")));

        let start = SessionStart {
            identity: Some(
                settings(true)
                    .admission
                    .identify(&token("63", &[]))
                    .unwrap(),
            ),
            ..SessionStart::default()
        };
        let actions = Machine::new(settings(true), start).opened();
        assert_eq!(joined(&actions).id, Some(id("63")), "a token in the URL");
    }

    #[test]
    fn private_channels_and_the_channel_limit_are_enforced_on_subscribe() {
        let mut machine = admitted(settings(false), SessionStart::default());
        assert!(error(&machine.text(&subscribe("private:a"))).contains("needs a token"));
        let actions = machine.text(&subscribe("a"));
        assert!(matches!(&actions[0], Action::Subscribe(c) if *c == channel("a")));
        assert!(sent(&actions)[0].contains(r#""type":"subscribed""#));
        // Again: answered, not joined twice.
        let again = machine.text(&subscribe("a"));
        assert!(matches!(&again[..], [Action::Send(_)]));
        machine.text(&subscribe("b"));
        machine.text(&subscribe("c"));
        assert!(error(&machine.text(&subscribe("d"))).contains("subscription limit"));
        let actions = machine.text(r#"{"type":"unsubscribe","channel":"a"}"#);
        assert!(matches!(&actions[0], Action::Unsubscribe(c) if *c == channel("a")));
        assert!(sent(&actions)[0].contains(r#""type":"unsubscribed""#));
    }

    #[test]
    fn a_token_swap_keeps_to_the_new_tokens_channels() {
        let verifier = settings(false);
        let identity = verifier.admission.identify(&token("63", &["private:a"]));
        let start = SessionStart {
            identity: Some(identity.unwrap()),
            channels: vec![channel("private:a")],
            ..SessionStart::default()
        };
        let mut machine = admitted(settings(false), start);
        // Refresh for the same id, no longer listing private:a: it is left.
        let refresh = format!(r#"{{"type":"refresh","token":"{}"}}"#, token("63", &[]));
        let actions = machine.text(&refresh);
        assert!(matches!(actions[0], Action::ExpireIn(_)));
        assert!(matches!(&actions[1], Action::Unsubscribe(c) if *c == channel("private:a")));
        let frames = sent(&actions);
        assert!(frames[0].contains(r#""type":"unsubscribed""#));
        assert!(frames[1].contains(r#""type":"refreshed""#));
        assert!(error(&machine.text(&subscribe("private:a"))).contains("does not list"));
        // A refresh for another id is refused.
        let other = format!(r#"{{"type":"refresh","token":"{}"}}"#, token("64", &[]));
        assert_eq!(
            error(&machine.text(&other)),
            "refresh token is for another id"
        );
        // A register with another id's token swaps identity: new expiry,
        // new id, and its channels.
        let actions = machine.text(&register_token(&token("64", &["private:b"])));
        assert!(matches!(actions[0], Action::ExpireIn(_)));
        assert!(matches!(&actions[1], Action::Register { id: i, .. } if *i == id("64")));
        let actions = machine.text(&subscribe("private:b"));
        assert!(matches!(&actions[0], Action::Subscribe(_)));
    }

    #[test]
    fn refresh_needs_a_token_session() {
        let mut machine = admitted(settings(false), SessionStart::default());
        let refresh = format!(r#"{{"type":"refresh","token":"{}"}}"#, token("63", &[]));
        assert!(error(&machine.text(&refresh)).contains("registered with a token"));
    }
}
