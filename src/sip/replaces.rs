//! RFC 3891 `Replaces`, as an attended transfer (RFC 5589) carries it: the
//! agent's phone REFERs its caller to the dialog of its consultation call,
//! naming that dialog in the Refer-To URI's headers, percent-encoded:
//! `<sip:113@hotline?Replaces=consult-1%40phone%3Bto-tag%3D7743%3Bfrom-tag%3D6472>`.

/// The dialog a `Replaces` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    /// The tag of the side that receives the `Replaces` (here: ours).
    pub to_tag: String,
    /// The tag of the side that sent it.
    pub from_tag: String,
    /// Only an early dialog may be replaced.
    pub early_only: bool,
}

/// Why a `Replaces` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplacesError {
    #[error("bad percent-encoding in the Refer-To URI's headers")]
    Encoding,
    #[error("Replaces needs a Call-ID, a to-tag and a from-tag (RFC 3891)")]
    Incomplete,
}

impl Replaces {
    /// A `Replaces` header's value: `call-id;to-tag=...;from-tag=...`, with
    /// `early-only` and other parameters in any order.
    pub fn parse(value: &str) -> Result<Replaces, ReplacesError> {
        let mut parts = value.split(';').map(str::trim);
        let call_id = parts.next().unwrap_or("").to_string();
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for param in parts {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "to-tag" => to_tag = Some(val.trim().to_string()),
                "from-tag" => from_tag = Some(val.trim().to_string()),
                "early-only" => early_only = true,
                _ => {}
            }
        }
        match (to_tag, from_tag) {
            (Some(to_tag), Some(from_tag))
                if !call_id.is_empty() && !to_tag.is_empty() && !from_tag.is_empty() =>
            {
                Ok(Replaces {
                    call_id,
                    to_tag,
                    from_tag,
                    early_only,
                })
            }
            _ => Err(ReplacesError::Incomplete),
        }
    }

    /// The `Replaces` in a URI's headers (`sip:x@h?Replaces=...&...`), if it
    /// has one, with the URI without its headers.
    pub fn in_uri(uri: &str) -> Result<(String, Option<Replaces>), ReplacesError> {
        let Some((base, headers)) = uri.split_once('?') else {
            return Ok((uri.to_string(), None));
        };
        for header in headers.split('&') {
            let (name, value) = header.split_once('=').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("replaces") {
                let value = percent_decode(value).ok_or(ReplacesError::Encoding)?;
                return Ok((base.to_string(), Some(Replaces::parse(&value)?)));
            }
        }
        Ok((base.to_string(), None))
    }
}

/// RFC 3986 percent-decoding; `None` for a broken escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3891 section 6.1's header.
    #[test]
    fn the_rfc_3891_header_reads() {
        let r = Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff")
            .expect("valid");
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(r.to_tag, "ff87ff");
        assert_eq!(r.from_tag, "r33th4x0r");
        assert!(!r.early_only);
        let early =
            Replaces::parse("425928@bobster.example.org;to-tag=7743;from-tag=6472;early-only")
                .expect("valid");
        assert!(early.early_only);
    }

    /// The Refer-To of RFC 5589's attended transfer: escaped in the URI.
    #[test]
    fn a_refer_to_uri_carries_it_escaped() {
        let uri = "sips:Transferee@atlanta.example?Replaces=090459243588173445%3Bto-tag%3D7553452%3Bfrom-tag%3D31431";
        let (base, replaces) = Replaces::in_uri(uri).expect("valid");
        assert_eq!(base, "sips:Transferee@atlanta.example");
        let r = replaces.expect("present");
        assert_eq!(r.call_id, "090459243588173445");
        assert_eq!(r.to_tag, "7553452");
        assert_eq!(r.from_tag, "31431");
        let with_at = "sip:113@h?Replaces=consult%2F%2F%2F12%40phone%3Bto-tag%3Da%3Bfrom-tag%3Db";
        let (_, r) = Replaces::in_uri(with_at).expect("valid");
        assert_eq!(r.expect("present").call_id, "consult///12@phone");
    }

    #[test]
    fn uris_without_it_or_with_it_broken() {
        assert_eq!(
            Replaces::in_uri("sip:113@h").expect("plain"),
            ("sip:113@h".to_string(), None)
        );
        assert_eq!(
            Replaces::in_uri("sip:113@h?Subject=x").expect("other headers"),
            ("sip:113@h".to_string(), None)
        );
        assert_eq!(
            Replaces::in_uri("sip:113@h?Replaces=abc%3Bto-tag%3Da"),
            Err(ReplacesError::Incomplete)
        );
        assert_eq!(
            Replaces::in_uri("sip:113@h?Replaces=abc%3"),
            Err(ReplacesError::Encoding)
        );
        assert_eq!(
            Replaces::in_uri("sip:113@h?Replaces=%FF%FE"),
            Err(ReplacesError::Encoding)
        );
    }
}
