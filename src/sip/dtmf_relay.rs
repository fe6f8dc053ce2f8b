//! Digits carried in SIP INFO: `application/dtmf-relay` (`Signal=5\r\nDuration=160`)
//! and `application/dtmf` (a bare digit). Used by trunks that do not send
//! RFC 4733 events in RTP.

/// Media types we accept in INFO, for `Accept` headers.
pub const INFO_TYPES: &[&str] = &["application/dtmf-relay", "application/dtmf"];

/// The digit in an INFO body of `content_type`, if it carries one.
pub fn digit(content_type: &str, body: &[u8]) -> Option<char> {
    let body = std::str::from_utf8(body).ok()?;
    match content_type {
        "application/dtmf-relay" => body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| signal(value.trim()))
                .flatten()
        }),
        "application/dtmf" => signal(body.trim()),
        _ => None,
    }
}

/// `0`-`9`, `*`, `#`, `A`-`D`, and the event numbers 10/11 some gateways send.
fn signal(value: &str) -> Option<char> {
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v if v.len() == 1 => {
            let c = v.chars().next()?.to_ascii_uppercase();
            (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')).then_some(c)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(
            digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            digit("application/dtmf-relay", b"Signal= #\r\nDuration=100"),
            Some('#')
        );
        assert_eq!(
            digit("application/dtmf-relay", b"signal=10\nduration=250"),
            Some('*')
        );
        assert_eq!(digit("application/dtmf-relay", b"Duration=160"), None);
        assert_eq!(digit("application/dtmf-relay", b"Signal=55"), None);
        assert_eq!(digit("application/dtmf-relay", b"Signal=\xff"), None);
        assert_eq!(digit("application/dtmf", b"7"), Some('7'));
        assert_eq!(digit("application/dtmf", b"d\r\n"), Some('D'));
        assert_eq!(digit("text/plain", b"7"), None);
    }
}
