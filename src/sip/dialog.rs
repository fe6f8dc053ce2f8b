//! Dialog state for an INVITE we answer (RFC 3261 12.1.1) or one we sent
//! (12.1.2), and in-dialog requests we send (12.2.1.1): BYE, OPTIONS, ACK.

use super::message::{split_list, uri_params, Message, NameAddr, Writer};

/// What identifies a dialog on our side (Call-ID, our tag, their tag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("missing or malformed {0}")]
    Header(&'static str),
}

/// A dialog, from either side.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    /// Our From (UAC) or the To the caller addressed (UAS), without tag.
    pub local_uri: String,
    /// The peer's From (UAS) or our To (UAC), without tag.
    pub remote_uri: String,
    /// Highest CSeq seen from the peer (0: none yet).
    pub remote_cseq: u32,
    /// CSeq of the last request we sent (0: none yet).
    pub local_cseq: u32,
    /// Where in-dialog requests are addressed (the peer's Contact URI).
    pub remote_target: String,
    /// Route set in the order our requests use it, each a `<uri>` name-addr.
    pub route_set: Vec<String>,
}

/// What a UAC dialog keeps of the INVITE that created it.
#[derive(Debug, Clone)]
pub struct SentInvite<'a> {
    pub call_id: &'a str,
    /// Our From value without tag, and our tag.
    pub local_uri: &'a str,
    pub local_tag: &'a str,
    /// The To value we sent (no tag).
    pub remote_uri: &'a str,
    pub request_uri: &'a str,
    pub cseq: u32,
}

impl Dialog {
    /// The dialog an INVITE creates once we answer it with `local_tag`.
    pub fn from_invite(invite: &Message, local_tag: &str) -> Result<Dialog, DialogError> {
        let call_id = invite.call_id().ok_or(DialogError::Header("Call-ID"))?;
        let from = NameAddr::parse(invite.header("From").unwrap_or(""))
            .ok_or(DialogError::Header("From"))?;
        let to =
            NameAddr::parse(invite.header("To").unwrap_or("")).ok_or(DialogError::Header("To"))?;
        let contact = invite
            .header("Contact")
            .and_then(|c| split_list(c).into_iter().next())
            .and_then(NameAddr::parse)
            .filter(|c| c.uri != "*")
            .ok_or(DialogError::Header("Contact"))?;
        let cseq = invite.cseq().ok_or(DialogError::Header("CSeq"))?;
        let route_set = invite
            .headers_named("Record-Route")
            .flat_map(split_list)
            .map(str::to_string)
            .collect();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: from.tag().unwrap_or("").to_string(),
            },
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            remote_cseq: cseq.seq,
            local_cseq: 0,
            remote_target: contact.uri,
            route_set,
        })
    }

    /// The dialog a 1xx (with To tag) or 2xx to our INVITE creates (RFC 3261
    /// 12.1.2): the route set is the Record-Route reversed; without a Contact
    /// the Request-URI stays the target. A response without To tag still
    /// makes a dialog (with an empty remote tag) so that its 2xx can be ACKed.
    pub fn from_response(sent: &SentInvite, response: &Message) -> Dialog {
        let remote_tag = response.to_tag().unwrap_or_default();
        let remote_target = response
            .header("Contact")
            .and_then(|c| split_list(c).into_iter().next())
            .and_then(NameAddr::parse)
            .filter(|c| c.uri != "*")
            .map(|c| c.uri)
            .unwrap_or_else(|| sent.request_uri.to_string());
        let mut route_set: Vec<String> = response
            .headers_named("Record-Route")
            .flat_map(split_list)
            .map(str::to_string)
            .collect();
        route_set.reverse();
        Dialog {
            id: DialogId {
                call_id: sent.call_id.to_string(),
                local_tag: sent.local_tag.to_string(),
                remote_tag,
            },
            local_uri: sent.local_uri.to_string(),
            remote_uri: sent.remote_uri.to_string(),
            remote_cseq: 0,
            local_cseq: sent.cseq,
            remote_target,
            route_set,
        }
    }

    /// Checks and records the CSeq of an in-dialog request (RFC 3261 12.2.2):
    /// false when it is lower than one already seen (answer 500).
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        if seq < self.remote_cseq {
            return false;
        }
        self.remote_cseq = seq;
        true
    }

    /// Builds the next in-dialog request (new CSeq). `via` is the full Via
    /// value with a fresh branch.
    pub fn request(&mut self, method: &str, via: &str, user_agent: &str) -> Vec<u8> {
        self.request_with(method, via, user_agent, &[])
    }

    /// `request` with extra headers (e.g. Session-Expires on a refresh).
    pub fn request_with(
        &mut self,
        method: &str,
        via: &str,
        user_agent: &str,
        extra: &[(String, String)],
    ) -> Vec<u8> {
        self.local_cseq = self.local_cseq.saturating_add(1);
        self.build(method, self.local_cseq, via, user_agent, extra, None)
    }

    /// `request_with` carrying a body of `content_type` (a NOTIFY's sipfrag).
    pub fn request_with_body(
        &mut self,
        method: &str,
        via: &str,
        user_agent: &str,
        extra: &[(String, String)],
        content_type: &str,
        body: &[u8],
    ) -> Vec<u8> {
        self.local_cseq = self.local_cseq.saturating_add(1);
        self.build(
            method,
            self.local_cseq,
            via,
            user_agent,
            extra,
            Some((content_type, body)),
        )
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (RFC 3261
    /// 13.2.2.4): its own branch, the INVITE's CSeq number, the dialog's route.
    pub fn ack(&self, invite_cseq: u32, via: &str, user_agent: &str) -> Vec<u8> {
        self.build("ACK", invite_cseq, via, user_agent, &[], None)
    }

    fn build(
        &self,
        method: &str,
        cseq: u32,
        via: &str,
        user_agent: &str,
        extra: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let (request_uri, routes) = self.route();
        let mut w = Writer::request(method, &request_uri);
        w.header("Via", via).header("Max-Forwards", "70");
        for route in &routes {
            w.header("Route", route);
        }
        let from = format!("{};tag={}", self.local_uri, self.id.local_tag);
        let to = if self.id.remote_tag.is_empty() {
            self.remote_uri.clone()
        } else {
            format!("{};tag={}", self.remote_uri, self.id.remote_tag)
        };
        w.header("From", &from)
            .header("To", &to)
            .header("Call-ID", &self.id.call_id)
            .header("CSeq", &format!("{cseq} {method}"))
            .header("User-Agent", user_agent);
        for (name, value) in extra {
            w.header(name, value);
        }
        match body {
            Some((content_type, body)) => w.finish(Some(content_type), body),
            None => w.finish(None, b""),
        }
    }

    /// Request-URI and Route headers (12.2.1.1): loose routing when the first
    /// route has `lr`, else the strict-routing rewrite.
    fn route(&self) -> (String, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let first_uri = NameAddr::parse(first).map(|n| n.uri).unwrap_or_default();
        let loose = uri_params(&first_uri)
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("lr"));
        if loose || first_uri.is_empty() {
            return (self.remote_target.clone(), self.route_set.clone());
        }
        let mut routes: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
        routes.push(format!("<{}>", self.remote_target));
        let bare = first_uri.split(['?']).next().unwrap_or("").to_string();
        (bare, routes)
    }
}

/// `"Display" <uri>;params` with the tag removed.
fn without_tag(addr: &NameAddr) -> String {
    let mut out = match &addr.display {
        Some(d) => format!(
            "\"{}\" <{}>",
            d.replace('\\', "\\\\").replace('"', "\\\""),
            addr.uri
        ),
        None => format!("<{}>", addr.uri),
    };
    for (name, value) in &addr.params {
        if name.eq_ignore_ascii_case("tag") {
            continue;
        }
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::wire::{decode, Decoded, Framing};

    fn invite(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:22334455@hotline.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n\
             From: \"Kari\" <sip:4799887766@trunk.example>;tag=caller1\r\n\
             To: <sip:22334455@hotline.example>\r\n\
             Call-ID: dlg-1@trunk\r\n\
             CSeq: 10 INVITE\r\n\
             Contact: <sip:4799887766@192.0.2.10:5060;transport=udp>\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match decode(text.as_bytes(), Framing::Datagram, 4096) {
            Decoded::Message(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn bye_without_routes_goes_to_contact() {
        let mut d = Dialog::from_invite(&invite(""), "ours").unwrap();
        let bye = text(d.request(
            "BYE",
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb1;rport",
            "hotline",
        ));
        assert!(bye.starts_with("BYE sip:4799887766@192.0.2.10:5060;transport=udp SIP/2.0\r\n"));
        assert!(bye.contains("\r\nFrom: <sip:22334455@hotline.example>;tag=ours\r\n"));
        assert!(bye.contains("\r\nTo: \"Kari\" <sip:4799887766@trunk.example>;tag=caller1\r\n"));
        assert!(bye.contains("\r\nCall-ID: dlg-1@trunk\r\n"));
        assert!(bye.contains("\r\nCSeq: 1 BYE\r\n"));
        assert!(!bye.contains("Route:"));
        assert!(bye.ends_with("Content-Length: 0\r\n\r\n"));
        let again = text(d.request("BYE", "v", "hotline"));
        assert!(again.contains("\r\nCSeq: 2 BYE\r\n"));
    }

    #[test]
    fn loose_and_strict_route_sets() {
        let rr = "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\nRecord-Route: <sip:p3.example;lr>\r\n";
        let mut d = Dialog::from_invite(&invite(rr), "t").unwrap();
        let bye = text(d.request("BYE", "v", "ua"));
        assert!(bye.starts_with("BYE sip:4799887766@192.0.2.10:5060;transport=udp SIP/2.0"));
        let routes: Vec<&str> = bye.lines().filter(|l| l.starts_with("Route:")).collect();
        assert_eq!(
            routes,
            vec![
                "Route: <sip:p1.example;lr>",
                "Route: <sip:p2.example;lr>",
                "Route: <sip:p3.example;lr>"
            ]
        );
        let mut strict =
            Dialog::from_invite(&invite("Record-Route: <sip:strict.example>\r\n"), "t").unwrap();
        let bye = text(strict.request("BYE", "v", "ua"));
        assert!(bye.starts_with("BYE sip:strict.example SIP/2.0"));
        assert!(bye.contains("Route: <sip:4799887766@192.0.2.10:5060;transport=udp>"));
    }

    fn response(extra: &str) -> Message {
        let text = format!(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKi1\r\n\
             From: <sip:+4791234567@10.0.0.1>;tag=ours\r\n\
             To: <sip:agent7@10.0.0.1>;tag=theirs\r\n\
             Call-ID: out-1@10.0.0.1\r\n\
             CSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match decode(text.as_bytes(), Framing::Datagram, 4096) {
            Decoded::Message(m) => m,
            other => panic!("{other:?}"),
        }
    }

    const SENT: SentInvite<'static> = SentInvite {
        call_id: "out-1@10.0.0.1",
        local_uri: "<sip:+4791234567@10.0.0.1>",
        local_tag: "ours",
        remote_uri: "<sip:agent7@10.0.0.1>",
        request_uri: "sip:agent7@192.0.2.7:5062",
        cseq: 1,
    };

    #[test]
    fn uac_dialog_reverses_record_route_and_acks_with_invite_cseq() {
        let rr = "Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\nContact: <sip:agent7@192.0.2.99>\r\n";
        let mut d = Dialog::from_response(&SENT, &response(rr));
        assert_eq!(d.id.remote_tag, "theirs");
        assert_eq!(d.remote_target, "sip:agent7@192.0.2.99");
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        let ack = text(d.ack(1, "v", "ua"));
        assert!(ack.starts_with("ACK sip:agent7@192.0.2.99 SIP/2.0\r\n"));
        assert!(ack.contains("\r\nCSeq: 1 ACK\r\n"));
        assert!(ack.contains("\r\nFrom: <sip:+4791234567@10.0.0.1>;tag=ours\r\n"));
        assert!(ack.contains("\r\nTo: <sip:agent7@10.0.0.1>;tag=theirs\r\n"));
        let bye = text(d.request("BYE", "v", "ua"));
        assert!(
            bye.contains("\r\nCSeq: 2 BYE\r\n"),
            "BYE follows the INVITE's CSeq"
        );
        // Without Contact the Request-URI stays the target.
        let bare = Dialog::from_response(&SENT, &response(""));
        assert_eq!(bare.remote_target, "sip:agent7@192.0.2.7:5062");
    }

    #[test]
    fn cseq_order_and_missing_contact() {
        let mut d = Dialog::from_invite(&invite(""), "t").unwrap();
        assert!(d.accept_remote_cseq(11));
        assert!(!d.accept_remote_cseq(9));
        let mut m = invite("");
        m.headers.retain(|h| h.name != "Contact");
        assert_eq!(
            Dialog::from_invite(&m, "t").unwrap_err(),
            DialogError::Header("Contact")
        );
    }
}
